// Loaded between require.js and the ipywidgets embed manager. The manager finds its own font files relative
// to its AMD module path, which require.js would resolve against each page's folder; point that path at this
// site's vendor/ folder instead, so widget icons load from the book itself on every page, at any depth.
(function () {
  var scripts = document.getElementsByTagName("script");
  for (var i = 0; i < scripts.length; i++) {
    var src = scripts[i].src || "";
    var at = src.indexOf("vendor/require.js");
    if (at >= 0) {
      require.config({ paths: { "@jupyter-widgets/html-manager/dist": src.slice(0, at) + "vendor" } });
      return;
    }
  }
})();

// The embed manager typesets widget labels with MathJax 2's API (MathJax.Hub.Queue); the book ships MathJax 3,
// which has no Hub, so every widget label logged "Cannot read properties of undefined (reading 'Queue')".
// Give whichever object is window.MathJax (first the page's config object, then MathJax 3 itself, which
// replaces it when it loads) a non-enumerable Hub whose Queue forwards 'Typeset' requests to MathJax 3.
(function () {
  function withHub(mj) {
    if (mj && typeof mj === "object" && !("Hub" in mj)) {
      var hub = {
        Queue: function () {
          for (var i = 0; i < arguments.length; i++) {
            var job = arguments[i];
            if (Array.isArray(job) && job[0] === "Typeset" && job[2] && window.MathJax.typesetPromise) {
              window.MathJax.typesetPromise([job[2]]).catch(function () {});
            }
          }
        },
      };
      Object.defineProperty(mj, "Hub", { value: hub, enumerable: false, configurable: true });
    }
    return mj;
  }
  var current = withHub(window.MathJax);
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    get: function () { return current; },
    set: function (value) { current = withHub(value); },
  });
})();

// A slider's handle is what a keyboard or screen-reader user operates, but the embed manager gives it no name
// (axe: aria-input-field-name). Name each handle after its slider's label, on every widget as it is rendered.
(function () {
  function nameHandles(root) {
    var handles = root.querySelectorAll ? root.querySelectorAll(".widget-slider .noUi-handle:not([aria-label])") : [];
    for (var i = 0; i < handles.length; i++) {
      var slider = handles[i].closest(".widget-slider");
      var label = slider && slider.querySelector(".widget-label");
      var text = label && label.textContent.trim();
      if (text) handles[i].setAttribute("aria-label", text);
    }
  }
  function start() {
    nameHandles(document);
    new MutationObserver(function (changes) {
      for (var i = 0; i < changes.length; i++) {
        for (var j = 0; j < changes[i].addedNodes.length; j++) nameHandles(changes[i].addedNodes[j]);
      }
    }).observe(document.body, { childList: true, subtree: true });
  }
  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
