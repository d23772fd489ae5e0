// Applies the saved theme ("light" or "dark"; none: follow the system) before the first paint.
(function () {
  try {
    var theme = localStorage.getItem("sdrest.theme");
    if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  } catch (e) {
    // storage blocked (private mode): follow the system
  }
})();
