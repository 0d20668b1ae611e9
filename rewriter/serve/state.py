"""What every request of the proxy needs, built once per process (`create_app`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rewriter import config
from rewriter.boost.profile import DEFAULT_BOOST_PROFILE, BoostProfile
from rewriter.engine.http_pool import EngineHTTP
from rewriter.experiments import assignment, impressions
from rewriter.profiles.store import ProfileStore
from rewriter.serve.errors import ProxyError


@dataclass
class ProxyState:
    """Everything a request needs, built once per process."""

    settings: config.Settings
    http: EngineHTTP
    profiles: ProfileStore
    boost_profiles: dict[str, BoostProfile]
    secret: bytes
    default_profile: str = DEFAULT_BOOST_PROFILE
    index_profiles: dict[str, str] = field(default_factory=dict)
    boost_errors: list[str] = field(default_factory=list)
    experiments: assignment.ExperimentSet = field(default_factory=assignment.ExperimentSet)
    impressions: impressions.ImpressionWriter | None = None

    def boost_for(
        self, index: str, header: str | None, arm: assignment.Arm | None = None
    ) -> BoostProfile:
        variant = arm.variant.boost_profile if arm else None
        name = header or variant or self.index_profiles.get(index) or self.default_profile
        try:
            return (
                arm.variant.apply(self.boost_profiles[name]) if arm else self.boost_profiles[name]
            )
        except KeyError:
            known = ", ".join(sorted(self.boost_profiles)) or "none loaded"
            raise ProxyError(
                400,
                "affinity_unknown_boost_profile",
                f"boost profile {name!r} is not loaded (known: {known}); fix X-Boost-Profile "
                "or add the file to profiles/",
            ) from None
