"""Routing rules: which destinations an object goes to, from its small metadata dict.

A rule is a dict {"dest": name, "modality": optional, "iod": optional, "sop_class_uid": optional};
each optional key may be one value or a list of values. A destination with no rule receives
every object; one with rules receives the objects that match at least one of them.
"""

_KEYS = ("modality", "iod", "sop_class_uid")


def _matches(rule, meta):
    for key in _KEYS:
        want = rule.get(key)
        if want is None:
            continue
        have = meta.get(key)
        if isinstance(want, (list, tuple)):
            if have not in want:
                return False
        elif have != want:
            return False
    return True


def route(rules, destinations, meta):
    """Names from `destinations` (in their order) that the object described by `meta` goes to."""
    chosen = []
    for dest in destinations:
        ruled = False
        for rule in rules:
            if rule.get("dest") != dest:
                continue
            ruled = True
            if _matches(rule, meta):
                chosen.append(dest)
                break
        else:
            if not ruled:
                chosen.append(dest)
    return chosen


def check(rules):
    """Raise ValueError on a rule that cannot work (the config layer turns it into ConfigError)."""
    for rule in rules:
        if not isinstance(rule, dict) or not isinstance(rule.get("dest"), str):
            raise ValueError("routing rule needs a 'dest' name: " + repr(rule))
        for key in rule:
            if key != "dest" and key not in _KEYS:
                raise ValueError("routing rule key not understood: " + key)
