"""Retry delays: exponential backoff, capped, with jitter so that a fleet of gateways that lost the
same archive does not reconnect in lock-step when it returns."""

from modgate.port import entropy


def uniform():
    """A float in [0, 1) from the port's random source."""
    raw = entropy.random_bytes(2)
    return (raw[0] | (raw[1] << 8)) / 65536


def delay_ms(attempt, base_ms, max_ms, jitter=0.0, rand=uniform):
    """Delay before retry number `attempt` (1 = after the first failure).

    base * 2^(attempt-1), capped at max_ms, then reduced by up to `jitter` (0..1) of itself:
    the result lies in [d * (1 - jitter), d], never below 1 ms.
    """
    if attempt < 1:
        attempt = 1
    shift = attempt - 1
    delay = max_ms if shift >= 30 else base_ms << shift
    if delay > max_ms:
        delay = max_ms
    if jitter > 0:
        delay -= int(delay * jitter * rand())
    return delay if delay > 1 else 1
