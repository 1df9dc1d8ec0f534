"""A Python grpcio client of cara, as a user of another language would write it.

Usage: client.py STUBS_DIR ADDRESS TOKEN NONCE. The stubs are generated with protoc from proto/
(see README "Clients"). Prints one JSON document of what it saw; the Node test asserts on it.
"""
import json
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from carapace.ops.v1 import ops_pb2, ops_pb2_grpc  # noqa: E402
from carapace.tasks.v1 import tasks_pb2, tasks_pb2_grpc  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402

address, token, nonce = sys.argv[2], sys.argv[3], sys.argv[4]
auth = [("authorization", f"Bearer {token}")]
out = {}

# No proxy: the server is on loopback.
channel = grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)])
ops = ops_pb2_grpc.OpsServiceStub(channel)
tasks = tasks_pb2_grpc.TasksServiceStub(channel)


def details(err):
    """The google.rpc.Status in the grpc-status-details-bin trailer, details unpacked."""
    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    if raw is None:
        return None
    status = status_pb2.Status.FromString(raw)
    seen = {"code": status.code, "message": status.message}
    for any_detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo):
            if any_detail.Is(kind.DESCRIPTOR):
                detail = kind()
                any_detail.Unpack(detail)
                if kind is error_details_pb2.ErrorInfo:
                    seen["error_info"] = {"reason": detail.reason, "domain": detail.domain}
                elif kind is error_details_pb2.BadRequest:
                    seen["field_violations"] = [[v.field, v.description] for v in detail.field_violations]
                else:
                    seen["retry_delay_seconds"] = detail.retry_delay.seconds
    return seen


def event_task(text):
    """Creates a systemEvent task and waits (WatchTask) until it is done: its log line is written."""
    created = tasks.CreateTask(
        tasks_pb2.CreateTaskRequest(payload=tasks_pb2.TaskPayload(system_event=tasks_pb2.SystemEventPayload(text=text))),
        metadata=auth,
        timeout=10,
    )
    for update in tasks.WatchTask(tasks_pb2.WatchTaskRequest(id=created.task.id), metadata=auth, timeout=10):
        if update.task.state == tasks_pb2.TASK_STATE_DONE:
            break
    return created


status = ops.GetStatus(ops_pb2.GetStatusRequest(), metadata=auth, timeout=10)
out["status"] = {"port": status.port, "state_dir": status.state_dir, "checks": [c.name for c in status.checks]}

created = event_task(f"python-before-{nonce}")
got = tasks.GetTask(tasks_pb2.GetTaskRequest(id=created.task.id), metadata=auth, timeout=10)
out["task"] = {"created": created.created, "id": created.task.id, "got_id": got.task.id, "text": got.task.payload.system_event.text, "state": tasks_pb2.TaskState.Name(got.task.state)}

tail = ops.TailLogs(ops_pb2.TailLogsRequest(limit=50, filter=ops_pb2.LogFilter(contains="system event")), metadata=auth, timeout=10)
out["tail"] = {"count": len(tail.entries), "events": [e.fields["event"] for e in tail.entries if "event" in e.fields]}

# FollowLogs: the first message (tail=1) proves the stream is live; a line logged after that must arrive.
follow = ops.FollowLogs(ops_pb2.FollowLogsRequest(tail=1, filter=ops_pb2.LogFilter(contains="system event")), metadata=auth, timeout=20)
first = next(follow)
after = None
event_task(f"python-after-{nonce}")
for message in follow:
    if message.WhichOneof("event") == "entry" and message.entry.fields["event"] == f"python-after-{nonce}":
        after = message.entry
        break
follow.cancel()
out["follow"] = {"first": first.entry.fields["event"], "first_seq": first.entry.seq, "after": after.fields["event"], "after_seq": after.seq, "level": ops_pb2.LogLevel.Name(after.level)}

try:
    ops.TailLogs(ops_pb2.TailLogsRequest(limit=0), metadata=auth, timeout=10)
    out["invalid"] = "accepted"
except grpc.RpcError as err:
    out["invalid"] = {"code": err.code().name, "message": err.details(), "status": details(err)}

try:
    ops.GetStatus(ops_pb2.GetStatusRequest(), timeout=10)
    out["no_token"] = "accepted"
except grpc.RpcError as err:
    out["no_token"] = {"code": err.code().name, "status": details(err)}

nope = channel.unary_unary("/carapace.ops.v1.OpsService/Nope", request_serializer=lambda m: m, response_deserializer=lambda b: b)
try:
    nope(b"", metadata=auth, timeout=10)
    out["unknown_method"] = "accepted"
except grpc.RpcError as err:
    out["unknown_method"] = {"code": err.code().name, "message": err.details()}

channel.close()
print(json.dumps(out))
