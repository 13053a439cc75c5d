/* Follow Cockpit's light/dark theme (the shell's "shell:style" setting: auto, light or
 * dark), as Cockpit's own pages do: PatternFly 4's dark theme is the pf-theme-dark class
 * on the root element. */
(function () {
    "use strict";
    function apply(style) {
        const chosen = style || window.localStorage.getItem("shell:style") || "auto";
        const dark = chosen === "dark" ||
            (chosen === "auto" && window.matchMedia &&
             window.matchMedia("(prefers-color-scheme: dark)").matches);
        document.documentElement.classList.toggle("pf-theme-dark", dark);
    }
    window.addEventListener("storage", event => {
        if (event.key === "shell:style")
            apply();
    });
    window.addEventListener("cockpit-style", event => {
        if (event instanceof CustomEvent)
            apply(event.detail.style);
    });
    if (window.matchMedia)
        window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => apply());
    apply();
}());
