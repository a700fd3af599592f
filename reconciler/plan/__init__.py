"""The plan, pure (no IO, no clock, no environment): :mod:`.actions` (its types), :mod:`.contents` (what every
manifest version holds, and how two contents differ), :mod:`.observed` (which server version stands for a
manifest version; the fingerprint of what was observed) and :mod:`.planner` (:func:`~.planner.compute_plan`).
"""
