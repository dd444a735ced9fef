// The VM page's terminal: xterm.js over the console WebSocket (/vms/{id}/console/ws).
// Binary frames are the serial port's bytes both ways; text frames are JSON status. It
// reconnects by itself after a manager or VM restart, waits while the VM is not running
// (the status panel above says so and shows the last lines), and after an idle
// disconnect waits for a key or a click rather than defeating the idle limit.
(function () {
  "use strict";
  const el = document.getElementById("vm-terminal");
  if (!el || typeof Terminal === "undefined") return;
  const status = document.getElementById("vm-terminal-status");
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + el.dataset.ws;
  const term = new Terminal({ cursorBlink: true, fontSize: 13, scrollback: 5000,
    fontFamily: '"JetBrains Mono", ui-monospace, SFMono-Regular, Menlo, monospace' });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  window.addEventListener("resize", () => fit.fit());
  const enc = new TextEncoder();
  let ws = null;
  let backoff = 500;
  let parked = false; // disconnected for idling: reconnect on the operator's next move

  function say(text, state) {
    status.textContent = text;
    status.dataset.state = state;
    el.dataset.state = state;
  }
  function vmState() {
    const s = document.getElementById("vm-status");
    if (!s) return "";
    if (s.dataset.state === "running" && s.dataset.console !== "true") return "without-console";
    return s.dataset.state;
  }
  function sendResize() {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
    }
  }
  term.onData((d) => {
    if (parked) { parked = false; connect(); return; }
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(enc.encode(d));
  });
  term.onResize(sendResize);
  el.addEventListener("click", () => { if (parked) { parked = false; connect(); } });

  function connect() {
    const st = vmState();
    if (st === "without-console") {
      say("this VM's hypervisor gives no interactive console — its last lines are above", "none");
      setTimeout(connect, 3000);
      return;
    }
    if (st !== "running") {
      say("the VM is " + (st || "not running") + " — its last console lines are above", "stopped");
      setTimeout(connect, 2000);
      return;
    }
    say("connecting…", "connecting");
    ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      backoff = 500;
      term.reset(); // the history that follows is the whole picture
      sendResize();
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        const m = JSON.parse(ev.data);
        if (m.type === "status") say(m.state === "connected" ? "connected" : m.message, m.state === "connected" ? "live" : "waiting");
        return;
      }
      term.write(new Uint8Array(ev.data));
    };
    ws.onclose = (ev) => {
      ws = null;
      if (ev.code === 1008) { // policy: idle, or fell behind
        parked = true;
        say("disconnected: " + ev.reason + " — press a key or click to reconnect", "parked");
        return;
      }
      say("disconnected" + (ev.reason ? ": " + ev.reason : "") + " — reconnecting…", "reconnecting");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }
  connect();
})();
