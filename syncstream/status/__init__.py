"""``syncstream status``: the store and its tables at a glance, as text or one JSON object.
Each section is one function of the store (``sections``); ``text`` lays them out."""
