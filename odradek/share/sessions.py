"""Share sessions (KIP-932): the partitions a share consumer fetches from this
broker, and the epoch of its ShareFetch / ShareAcknowledge requests. Pure.

Theory of operation
-------------------
A share session belongs to one (group id, member id) on one broker, as a
fetch session (KIP-227) belongs to a consumer:

- ShareFetch with epoch 0 opens a session with the partitions it names
  (replacing the member's previous session, whose records are released);
  it may carry no acknowledgements (INVALID_REQUEST). When
  ``group.share.max.share.sessions`` are open, SHARE_SESSION_LIMIT_REACHED.
- Then every ShareFetch or ShareAcknowledge carries the next epoch (1, 2,
  ... wrapping to 1): it must be exactly the one expected
  (INVALID_SHARE_SESSION_EPOCH), for a session that exists
  (SHARE_SESSION_NOT_FOUND). An incremental ShareFetch adds the partitions
  it names and drops its forgotten ones; it fetches from all of them.
  ShareAcknowledge with epoch 0 is INVALID_SHARE_SESSION_EPOCH.
- Epoch -1 closes the session after its acknowledgements (ShareFetch with
  -1 acknowledges only, and fetches nothing); what the member still holds is
  released. So is everything of sessions whose connection closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from odradek.protocol import errors

INITIAL_EPOCH = 0
FINAL_EPOCH = -1
MAX_EPOCH = 2**31 - 1


def next_epoch(epoch: int) -> int:
    return 1 if epoch >= MAX_EPOCH else epoch + 1


@dataclass
class ShareSession:
    group_id: str
    member_id: str
    epoch: int  # the epoch the next request must carry
    partitions: dict = field(default_factory=dict)  # (topic id, index) -> None, in the order added
    connection: object = None

    @property
    def key(self) -> tuple[str, str]:
        return self.group_id, self.member_id


class ShareSessionCache:
    """The open share sessions of this broker."""

    def __init__(self, max_sessions: int = 2000):
        self.max_sessions = max_sessions
        self.sessions: dict[tuple[str, str], ShareSession] = {}

    def get(self, group_id: str, member_id: str) -> ShareSession | None:
        return self.sessions.get((group_id, member_id))

    def open(self, group_id: str, member_id: str, partitions, connection=None) -> tuple[int, ShareSession | None,
                                                                                       ShareSession | None]:
        """(error, the new session, the session it replaced)."""
        old = self.sessions.pop((group_id, member_id), None)
        if len(self.sessions) >= self.max_sessions:
            if old is not None:
                self.sessions[old.key] = old
            return errors.SHARE_SESSION_LIMIT_REACHED, None, None
        s = ShareSession(group_id, member_id, next_epoch(INITIAL_EPOCH), dict.fromkeys(partitions),
                         connection)
        self.sessions[s.key] = s
        return 0, s, old

    def advance(self, group_id: str, member_id: str, epoch: int) -> tuple[int, ShareSession | None]:
        """A request with ``epoch`` > 0 or -1 for an open session: (error, session).
        A positive epoch moves the session to the next one."""
        s = self.sessions.get((group_id, member_id))
        if s is None:
            return errors.SHARE_SESSION_NOT_FOUND, None
        if epoch == FINAL_EPOCH:
            return 0, s
        if epoch != s.epoch:
            return errors.INVALID_SHARE_SESSION_EPOCH, None
        s.epoch = next_epoch(epoch)
        return 0, s

    def close(self, s: ShareSession) -> None:
        if self.sessions.get(s.key) is s:
            del self.sessions[s.key]

    def of_connection(self, connection) -> list[ShareSession]:
        return [s for s in self.sessions.values() if s.connection is connection]


__all__ = ["ShareSession", "ShareSessionCache", "INITIAL_EPOCH", "FINAL_EPOCH", "next_epoch"]
