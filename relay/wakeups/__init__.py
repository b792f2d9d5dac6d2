"""The wake-up path: how a process learns that an account's stream advanced.

One package owns it, in the shape of centrifuge's Broker / BrokerEventHandler split: a
broker (in-process for the memory engine, pub/sub or sharded pub/sub for Redis) runs until
cancelled and calls the methods of one `WakeupHandler` for every hint, every change of
whether hints flow, and every gap that concerns only some accounts. The store knows nothing
of it beyond publishing the hint from inside its append.
"""

from relay.wakeups.base import Broker, Hint, WakeupHandler

__all__ = ["Broker", "Hint", "WakeupHandler"]
