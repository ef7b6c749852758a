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
