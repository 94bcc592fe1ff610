// The browser console's glue: an xterm.js terminal on the panel's console WebSocket.
// Binary frames carry the terminal's bytes both ways; a text frame tells the size.
(function () {
  "use strict";
  var el = document.getElementById("terminal");
  var status = document.getElementById("console-status");
  var term = new Terminal({ cursorBlink: true, fontFamily: "monospace", fontSize: 14, scrollback: 5000 });
  var fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  var proto = location.protocol === "https:" ? "wss:" : "ws:";
  var ws = new WebSocket(proto + "//" + location.host + el.dataset.ws);
  ws.binaryType = "arraybuffer";
  var enc = new TextEncoder();
  function open() { return ws.readyState === WebSocket.OPEN; }
  function sendSize() { if (open()) ws.send(JSON.stringify({ resize: { cols: term.cols, rows: term.rows } })); }
  function type(text) { if (open() && text) ws.send(enc.encode(text)); }
  ws.onopen = function () { status.textContent = "Connected"; el.dataset.state = "open"; sendSize(); term.focus(); };
  ws.onmessage = function (e) { term.write(new Uint8Array(e.data)); };
  ws.onclose = function (e) {
    status.textContent = "Closed" + (e.reason ? ": " + e.reason : "");
    el.dataset.state = "closed";
    el.dataset.reason = e.reason || "";
    term.options.disableStdin = true;
  };
  term.onData(type);
  term.onResize(sendSize);
  window.addEventListener("resize", function () { fit.fit(); });
  // Ctrl+Shift+C copies the selection, Ctrl+Shift+V pastes (plain Ctrl+C stays ^C for the server).
  term.attachCustomKeyEventHandler(function (ev) {
    if (ev.type !== "keydown" || !ev.ctrlKey || !ev.shiftKey) return true;
    if (ev.code === "KeyC" && term.hasSelection() && navigator.clipboard) {
      navigator.clipboard.writeText(term.getSelection());
      return false;
    }
    if (ev.code === "KeyV" && navigator.clipboard && navigator.clipboard.readText) {
      navigator.clipboard.readText().then(function (t) { term.paste(t); });
      return false;
    }
    return true;
  });
  document.getElementById("console-close").addEventListener("click", function () { ws.close(1000, "closed by the viewer"); });
  // What the terminal shows, as text (for people with screen readers and for the browser test).
  window.vesselConsole = {
    term: term,
    text: function () {
      var b = term.buffer.active, out = [];
      for (var i = 0; i < b.length; i++) { var l = b.getLine(i); if (l) out.push(l.translateToString(true)); }
      return out.join("\n");
    }
  };
})();
