"""Parser for the `facets:` section of profiles/*.yaml (profiles/retail.yaml documents every
key with examples; boost/facets.py is what it says).

Problems are reported through yaml_fields with file:line:column like the rest of a profile;
the facet field a rule names is recorded as a keyword-field reference for `affinity boost
check` to confirm against the catalog, and its segment as a segment reference.
"""

from __future__ import annotations

from yaml.nodes import Node, ScalarNode

from rewriter.boost import yaml_fields as y
from rewriter.boost.facets import MAX_FAVORED_LIMIT, FacetRule, FacetSettings
from rewriter.boost.segments_schema import ID, ID_HELP, name_ref


def parse_facets(node: Node, ctx: y.Ctx) -> FacetSettings:
    before = len(ctx.errors)
    values = y.section(node, ctx, _FACETS, "facets")
    y.check(ctx, before)
    return FacetSettings(**values)  # type: ignore[arg-type]


def _rules(node: Node, ctx: y.Ctx) -> tuple[FacetRule, ...]:
    return tuple(y.unique_items(node, ctx, "facet rules", "facet rule", _rule))


def _rule(node: Node, ctx: y.Ctx) -> FacetRule:
    before = len(ctx.errors)
    values = y.section(node, ctx, _RULE, "a facet rule")
    y.check(ctx, before)
    values.pop("description", None)
    if "id" not in values:
        y.fail(ctx, node, "missing required key 'id' (a short unique name, e.g. hide-outlet)")
    actions = [key for key in ("hide", "pin") if key in values]
    if len(actions) > 1:
        y.fail(ctx, node, "one of hide or pin per facet rule; split the rule")
    if actions and "group" not in values:
        y.fail(ctx, node, f"{actions[0]} needs `group:` (the facet's field, e.g. brand)")
    if not actions and not {"max_favored", "personalize"} & set(values):
        y.fail(ctx, node, "a facet rule needs one of hide, pin, max_favored or personalize")
    if "group" in values and not actions:
        y.fail(ctx, node, "`group:` is for hide or pin; max_favored and personalize are global")
    if actions:
        values["action"] = actions[0]
        values["values"] = values.pop(actions[0])
    return FacetRule(**values)  # type: ignore[arg-type]


def _id(node: Node, ctx: y.Ctx) -> str:
    value = y.text(node, ctx)
    if not ID.match(value):
        y.fail(ctx, node, f"facet rule id {value!r}: {ID_HELP}")
    return value


def _segment(node: Node, ctx: y.Ctx) -> str:
    name = y.text(node, ctx)
    name_ref(ctx, node, name)
    return name


def _group(node: Node, ctx: y.Ctx) -> str:
    name = y.text(node, ctx)
    y.ref(ctx, node, "field", name, "keyword")
    return name


def _hide(node: Node, ctx: y.Ctx) -> tuple[str, ...]:
    """`hide: all` hides the whole group; a value or list of values hides those."""
    if isinstance(node, ScalarNode) and y.scalar(node, ctx) == "all":
        return ()
    return y.texts(node, ctx)


_FACETS: dict[str, y.Parser] = {
    "personalize": y.boolean,
    "max_favored": y.int_between(0, MAX_FAVORED_LIMIT),
    "min_affinity": y.number_between(0.0, 1.0),
    "rules": _rules,
}

_RULE: dict[str, y.Parser] = {
    "id": _id,
    "description": y.text,
    "segment": _segment,
    "group": _group,
    "hide": _hide,
    "pin": y.texts,
    "max_favored": y.int_between(0, MAX_FAVORED_LIMIT),
    "personalize": y.boolean,
}

FACETS_KEYS: tuple[str, ...] = tuple(_FACETS)
FACET_RULE_KEYS: tuple[str, ...] = tuple(_RULE)
