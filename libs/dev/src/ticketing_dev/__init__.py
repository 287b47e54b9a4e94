"""The development workspace's tools: the system as local processes (``stack``, behind
``make up`` and the end-to-end tests) and a trace's waterfall (``trace_png``). Not shipped in
any image; it works on this repository (``ROOT``)."""
