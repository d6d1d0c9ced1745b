"""``wv demo``: the whole platform in one command (``wv.demo.cli``; ``wv.demo.story`` holds the steps).

Nothing is imported here, so the scenario and its helpers load without the CLI's database client
(``bench.label_efficiency`` renders the demo's days on the lent GPU machine, which has none).
"""
