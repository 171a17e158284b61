"""One module per panel of the chat UI: each has its event handlers (plain methods,
tested without a browser) and a ``layout()`` that creates its Gradio components."""
