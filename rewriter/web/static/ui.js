// The editor's tabs (Form / YAML). Everything else works without JavaScript.
document.querySelectorAll(".tab").forEach((tab) => {
  tab.addEventListener("click", () => {
    document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t === tab));
    document.querySelectorAll(".panel").forEach((p) => {
      p.classList.toggle("hidden", p.id !== "tab-" + tab.dataset.tab);
    });
  });
});
if (location.hash === "#yaml") {
  const yamlTab = document.querySelector('.tab[data-tab="yaml"]');
  if (yamlTab) yamlTab.click();
}
