"""The web app's library side: the handlers the page and the API call (:mod:`geodemo.web.handlers`), the
request policy (:mod:`geodemo.web.policy`), the example photos (:mod:`geodemo.web.examples`), server
limits (:mod:`geodemo.web.limits`) and Gradio inputs (:mod:`geodemo.web.inputs`, the settings generated
from the stages' options); ``app.py`` only lays out the page and wires them in."""
