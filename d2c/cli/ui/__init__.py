"""``d2c ui``: a local dashboard over the files d2c writes (d2c.yaml, profile.json, plans.json,
the run journal and reports).

The server is the standard library's ``http.server`` (no extra dependency); pages are HTML
rendered on the server with hand-written SVG charts, plus one small script shipped in the package
that polls a live run. Nothing is fetched from elsewhere. The modules: ``command`` (the click
command), ``server`` (HTTP, tokens, routing), ``project`` (reading the project's files),
``run_view`` (a run's spend, hosts and times from the journal), ``svg`` (charts), ``html``
(the page shell), and one ``page_*`` module per page.
"""
