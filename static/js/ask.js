// The Ask page: posts the question to the streaming endpoint and shows the answer as it is
// written (server-sent events read from the fetch body), then swaps in the stored answer with
// citation links and feedback buttons. Without JavaScript the form posts normally.
(function () {
  "use strict";

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function parseEvent(block) {
    var kind = "message", data = "";
    block.split("\n").forEach(function (line) {
      if (line.indexOf("event: ") === 0) kind = line.slice(7);
      else if (line.indexOf("data: ") === 0) data += line.slice(6);
    });
    return { kind: kind, data: data ? JSON.parse(data) : {} };
  }

  function start(form) {
    var result = document.getElementById("ask-result");
    var status = document.getElementById("ask-status");
    var button = document.getElementById("ask-submit");
    var article = element("article", "answer is-streaming");
    var head = element("header", "answer-head");
    var text = element("div", "answer-text", "");
    var sources = element("ol", "source-list");
    article.append(head, text, sources);
    result.replaceChildren(article);
    status.textContent = "Searching…";
    button.disabled = true;

    function finish(message) {
      status.textContent = message || "";
      button.disabled = false;
      article.classList.remove("is-streaming");
    }

    function handle(event) {
      if (event.kind === "sources") {
        var mode = event.data.mode === "offline" ? "offline · extractive" : "online";
        head.append(element("span", "badge " + (event.data.mode === "offline" ? "badge-offline" : "badge-online") + " answer-mode", mode));
        text.lang = event.data.language;
        event.data.sources.forEach(function (source) {
          var item = element("li", "answer-source");
          item.value = source.number;
          var link = element("a", "source-link", source.source_title);
          link.href = source.chunk_url;
          item.append(link);
          sources.append(item);
        });
        status.textContent = "Writing…";
      } else if (event.kind === "delta") {
        text.textContent += event.data.text;
      } else if (event.kind === "done") {
        var url = form.dataset.answerUrl.replace(/0\/$/, event.data.answer_id + "/");
        finish("");
        // The stored answer, rendered by the server: citations linked, feedback buttons.
        window.htmx.ajax("GET", url, { target: "#ask-result", swap: "innerHTML" });
      } else if (event.kind === "error") {
        var alert = element("div", "search-error");
        alert.setAttribute("role", "alert");
        alert.append(element("p", "", event.data.message + " "), element("code", "", event.data.code));
        result.replaceChildren(alert);
        finish("");
      }
    }

    fetch(form.dataset.streamUrl, {
      method: "POST",
      body: new FormData(form),
      headers: { "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value },
      credentials: "same-origin",
    }).then(function (response) {
      if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) return;
          buffer += decoder.decode(chunk.value, { stream: true });
          var end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            handle(parseEvent(buffer.slice(0, end)));
            buffer = buffer.slice(end + 2);
          }
          return pump();
        });
      }
      return pump();
    }).catch(function (error) {
      finish("The answer could not be loaded (" + error.message + ").");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("ask-form");
    if (!form || !window.fetch || !window.TextDecoder) return;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      start(form);
    });
    form.querySelector("#q").addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
    });
  });
})();
