"""Log directories.

DescribeLogDirs (35) v1-5: the broker's one log directory (``data_dir``, as
an absolute path) with the size of every partition hosted there, its offset
lag (the high watermark minus the log end offset, floored at 0, as Kafka
reports a current log) and, from v4, the volume's total and usable bytes. A
broker keeping its logs in memory has no log directory and answers an empty
list. Every replica is a current one (``is_future_key`` false) and no
directory is cordoned: odradek has one directory per broker.
Not served: AlterReplicaLogDirs (moving a replica between directories), and
several directories per broker (``log.dirs`` with more than one path).
"""

from __future__ import annotations

import os

from odradek.server.registry import handles


def volume_bytes(path: str) -> tuple[int, int]:
    """Total and usable bytes of the filesystem holding ``path`` (-1, -1 if unknown)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return -1, -1
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


@handles("DescribeLogDirs", 1, 5)
async def describe_log_dirs(ctx, request: dict) -> dict:
    broker = ctx.broker
    data_dir = broker.config.data_dir
    if data_dir is None:
        return {"error_code": 0, "results": []}
    wanted = request["topics"]
    selection: dict[str, list] = {}
    if wanted is None:
        for p in broker.replicas.all_partitions():
            selection.setdefault(p.topic.name, []).append(p)
    else:
        for w in wanted:
            t = broker.replicas.topic(w["topic"])
            if t is not None:
                parts = [t.by_index[i] for i in w["partitions"] if i in t.by_index]
                if parts:
                    selection[t.name] = parts
    topics = [{"name": name, "partitions": [
        {"partition_index": p.index, "partition_size": p.size_in_bytes,
         "offset_lag": max(p.high_watermark - p.log_end_offset, 0), "is_future_key": False}
        for p in selection[name]]} for name in sorted(selection)]
    path = os.path.abspath(data_dir)
    total, usable = volume_bytes(path)
    return {"error_code": 0, "results": [
        {"error_code": 0, "log_dir": path, "topics": topics, "total_bytes": total,
         "usable_bytes": usable, "is_cordoned": False}]}
