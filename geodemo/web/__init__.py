"""The web app's request policy (:mod:`geodemo.web.policy`), server limits (:mod:`geodemo.web.limits`)
and Gradio inputs (:mod:`geodemo.web.inputs`); ``app.py`` only wires them into the page."""
