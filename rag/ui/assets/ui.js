// The chat UI's behaviour in the browser (loaded once, in <head>). Everything it shows was
// escaped by the server (rag/ui/render.py); this file only moves and clones those nodes.
(function () {
  "use strict";
  var NARROW = "(max-width: 900px)";

  function closePopover() {
    var old = document.getElementById("rag-popover");
    if (old) old.remove();
  }

  // A cited passage in place, over the bottom of the screen: on a phone the sources panel
  // is far below the chat, so jumping there loses the reader's place.
  function openPopover(card) {
    closePopover();
    var box = document.createElement("div");
    box.id = "rag-popover";
    box.setAttribute("role", "dialog");
    box.setAttribute("aria-label", "Source " + (card.querySelector(".rag-badge") || {}).textContent);
    var close = document.createElement("button");
    close.className = "rag-popover-close";
    close.type = "button";
    close.setAttribute("aria-label", "Close");
    close.textContent = "×";
    close.addEventListener("click", closePopover);
    var copy = card.cloneNode(true);
    copy.removeAttribute("id");
    box.appendChild(close);
    box.appendChild(copy);
    document.body.appendChild(box);
    close.focus({preventScroll: true});
  }

  function flash(el) {
    for (var p = el.parentElement; p; p = p.parentElement) { if (p.tagName === "DETAILS") p.open = true; }
    el.scrollIntoView({behavior: "smooth", block: "center"});
    el.classList.remove("rag-flash"); void el.offsetWidth; el.classList.add("rag-flash");
    setTimeout(function () { el.classList.remove("rag-flash"); }, 1800);
  }

  // [n] in an answer: on a wide screen scroll the sources panel to passage n and flash it;
  // on a narrow one open it in a popover.
  document.addEventListener("click", function (ev) {
    var t = ev.target;
    if (t && t.closest && !t.closest("#rag-popover") && !t.closest("a.rag-cite")) closePopover();
    var a = t && t.closest ? t.closest("a[href^='#src-']") : null;
    if (!a) return;
    var id = (a.getAttribute("href") || "").slice(1);
    if (!/^src-[0-9]+-[0-9]+$/.test(id)) return;
    ev.preventDefault(); ev.stopPropagation();
    var el = document.getElementById(id);
    if (!el) return;
    if (window.matchMedia(NARROW).matches) openPopover(el); else flash(el);
  }, true);

  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") closePopover(); });

  function plainText(message) {
    var hidden = message.querySelector(".rag-plain");
    return hidden ? hidden.textContent : visibleText(message);
  }

  function visibleText(message) {
    var clone = message.cloneNode(true);
    clone.querySelectorAll("button, .rag-plain").forEach(function (n) { n.remove(); });
    return clone.textContent.replace(/\s+/g, " ").trim();
  }

  function writeClipboard(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    var area = document.createElement("textarea");  // plain http on another host: the old way
    area.value = text; area.style.position = "fixed"; area.style.opacity = "0";
    document.body.appendChild(area); area.select();
    try { document.execCommand("copy"); } finally { area.remove(); }
    return Promise.resolve();
  }

  // The chat's copy button copies the message's markup; give the plain text instead: the
  // answer with its [n] markers and the list of the sources it cites.
  document.addEventListener("click", function (ev) {
    var button = ev.target && ev.target.closest ? ev.target.closest("#chat button") : null;
    if (!button) return;
    var label = (button.getAttribute("aria-label") || button.getAttribute("title") || "").toLowerCase();
    if (label.indexOf("copy") < 0) return;
    // Gradio puts a message's buttons right after its row: .message-row, then .message-buttons.
    var buttons = button.closest(".message-buttons");
    var row = buttons ? buttons.previousElementSibling : null;
    while (row && !(row.classList && row.classList.contains("message-row"))) row = row.previousElementSibling;
    var message = row ? row.querySelector("[data-testid='bot'], [data-testid='user']") : null;
    if (!message) return;
    ev.preventDefault(); ev.stopImmediatePropagation();
    writeClipboard(plainText(message)).then(function () {
      button.setAttribute("data-rag-copied", "1");
      setTimeout(function () { button.removeAttribute("data-rag-copied"); }, 1500);
    });
  }, true);

  // Screen readers read a message's aria-label: make it the text, not the markup.
  function fixLabels(root) {
    (root.querySelectorAll ? root.querySelectorAll("#chat [data-testid='bot'], #chat [data-testid='user']") : [])
      .forEach(function (m) {
        var who = m.getAttribute("data-testid") === "bot" ? "bot" : "user";
        var label = who + "'s message: " + visibleText(m);
        if (m.getAttribute("aria-label") !== label) m.setAttribute("aria-label", label);
      });
  }
  var pending = false;
  new MutationObserver(function () {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; fixLabels(document); });
  }).observe(document.documentElement, {subtree: true, childList: true, characterData: true,
                                         attributes: true, attributeFilter: ["aria-label"]});
})();
