"""runtime.rpc_client against a real in-process grpc.aio server whose generic handler answers with scripted codes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, ClassVar

import grpc
import pytest
from google.protobuf import wrappers_pb2

from tessera.runtime import deadlines
from tessera.runtime.errors import InvalidArgument, to_grpc_status
from tessera.runtime.processes import free_port
from tessera.runtime.rpc_client import NO_RETRY, RetryPolicy, RpcCallError, ServiceClient, unary_call

SERVICE = "tessera.test.Scripted"
FAST = RetryPolicy(attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)
Text = wrappers_pb2.StringValue


class Scripted:
    """Each call fails with the next scripted code (None answers), after its delay; counts the calls it received."""

    def __init__(self) -> None:
        self.script: list[grpc.StatusCode | None] = []
        self.always: grpc.StatusCode | None = None
        self.delay_s = 0.0
        self.delays: list[float] = []  # per call, before delay_s
        self.hold_after_first_s = 0.0
        self.fail_after_first: grpc.StatusCode | None = None
        self.cancelled = asyncio.Event()
        self.calls = 0

    async def _next(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.calls += 1
        await asyncio.sleep(self.delays.pop(0) if self.delays else self.delay_s)
        code = self.script.pop(0) if self.script else self.always
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            error = InvalidArgument("must be >= 1", field="k", reason="K_TOO_SMALL")
            await context.abort_with_status(to_grpc_status(error))
        elif code is not None:
            await context.abort(code, f"scripted {code.name}")

    async def echo(self, request: Text, context: grpc.aio.ServicerContext[Any, Any]) -> Text:
        await self._next(context)
        return Text(value=request.value)

    async def count(self, request: Text, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Text]:
        await self._next(context)
        yield Text(value="1")
        if self.fail_after_first is not None:
            await context.abort(self.fail_after_first, "scripted, mid-stream")
        try:
            await asyncio.sleep(self.hold_after_first_s)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        yield Text(value="2")

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Echo": grpc.unary_unary_rpc_method_handler(
                    self.echo, request_deserializer=Text.FromString, response_serializer=Text.SerializeToString
                ),
                "Count": grpc.unary_stream_rpc_method_handler(
                    self.count, request_deserializer=Text.FromString, response_serializer=Text.SerializeToString
                ),
            },
        )


class ScriptedError(RpcCallError):
    pass


class ScriptedClient(ServiceClient):
    """What a capability's client is: a subclass, its callables on the channel, one method per RPC."""

    error: ClassVar[type[RpcCallError]] = ScriptedError

    def __init__(self, channel: grpc.aio.Channel, **kwargs: Any) -> None:
        super().__init__(channel, **kwargs)
        self.echo_rpc = channel.unary_unary(
            f"/{SERVICE}/Echo", request_serializer=Text.SerializeToString, response_deserializer=Text.FromString
        )
        self.count_rpc = channel.unary_stream(
            f"/{SERVICE}/Count", request_serializer=Text.SerializeToString, response_deserializer=Text.FromString
        )

    async def echo(self, text: str, *, timeout_s: float | None = None, idempotent: bool = True) -> str:
        reply: Text = await self._unary("Echo", self.echo_rpc, Text(value=text), timeout_s, idempotent=idempotent)
        return reply.value

    async def count(self, *, timeout_s: float | None = None) -> AsyncGenerator[str, None]:
        async with contextlib.aclosing(self._server_stream("Count", self.count_rpc, Text(), timeout_s)) as replies:
            async for reply in replies:
                yield reply.value


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, str]]:
    servicer = Scripted()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((servicer.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(0)


async def test_unavailable_is_retried_until_the_service_answers(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.script = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE, None]
    async with ScriptedClient.connect(address, retry=FAST) as client:
        assert await client.echo("hello", timeout_s=10) == "hello"
    assert servicer.calls == 3 and client.retries == 2


async def test_invalid_argument_is_raised_at_once_with_its_fields(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.always = grpc.StatusCode.INVALID_ARGUMENT
    async with ScriptedClient.connect(address, retry=FAST) as client:
        with pytest.raises(ScriptedError) as caught:
            await client.echo("hello", timeout_s=10)
    assert servicer.calls == 1 and client.retries == 0
    error = caught.value
    assert isinstance(error, RpcCallError) and error.method == "Echo" and error.attempts == 1
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.message == "must be >= 1"
    assert error.fields == {"k": "must be >= 1"} and error.reason == "K_TOO_SMALL"
    assert str(error) == "Echo: INVALID_ARGUMENT: must be >= 1 (k: must be >= 1)"


async def test_retries_are_bounded_by_the_policy(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.always = grpc.StatusCode.UNAVAILABLE
    async with ScriptedClient.connect(address, retry=FAST) as client:
        with pytest.raises(ScriptedError) as caught:
            await client.echo("hello", timeout_s=10)
    assert servicer.calls == caught.value.attempts == FAST.attempts and client.retries == FAST.attempts - 1
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE and str(caught.value).endswith("after 4 attempts")


async def test_no_retry_makes_one_attempt(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.always = grpc.StatusCode.UNAVAILABLE
    async with ScriptedClient.connect(address, retry=NO_RETRY) as client:
        with pytest.raises(ScriptedError) as caught:
            await client.echo("hello", timeout_s=10)
    assert servicer.calls == caught.value.attempts == 1 and client.retries == 0


async def test_a_call_that_is_not_idempotent_is_not_retried(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.always = grpc.StatusCode.UNAVAILABLE
    async with ScriptedClient.connect(address, retry=FAST) as client:
        with pytest.raises(ScriptedError) as caught:
            await client.echo("hello", timeout_s=10, idempotent=False)
    assert servicer.calls == caught.value.attempts == 1 and client.retries == 0


async def test_the_deadline_covers_every_attempt_and_backoff(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.always = grpc.StatusCode.UNAVAILABLE
    slow = RetryPolicy(attempts=20, initial_backoff_s=0.6, max_backoff_s=0.6, jitter=0.0)
    async with ScriptedClient.connect(address, retry=slow) as client:
        started = time.monotonic()
        with pytest.raises(ScriptedError) as caught:
            await client.echo("hello", timeout_s=1.0)
    # 0.6 s of backoff fits once in 1 s, a second one does not: two attempts, then the client gives up at once.
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE and servicer.calls == caught.value.attempts == 2
    assert time.monotonic() - started < 1.0


async def test_a_retry_gets_only_what_is_left_of_the_deadline(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.script = [grpc.StatusCode.UNAVAILABLE]
    servicer.delays = [0.0, 5.0]  # the retry hangs
    policy = RetryPolicy(attempts=4, initial_backoff_s=0.5, max_backoff_s=0.5, jitter=0.0)
    async with ScriptedClient.connect(address, retry=policy) as client:
        started = time.monotonic()
        with pytest.raises(ScriptedError) as caught:
            await client.echo("hello", timeout_s=1.0)
    # 1 s in all; a retry given a whole 1 s of its own would end at 1.5 s.
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and caught.value.attempts == 2
    assert time.monotonic() - started < 1.25


async def test_the_call_never_outlives_the_request_being_served(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.delay_s = 5.0
    async with ScriptedClient.connect(address, retry=FAST) as client:
        token = deadlines.set_remaining(0.3)  # as a Tessera handler does for its caller's deadline
        try:
            started = time.monotonic()
            with pytest.raises(ScriptedError) as caught:
                await client.echo("hello", timeout_s=60)
        finally:
            deadlines.reset(token)
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and caught.value.attempts == 1
    assert time.monotonic() - started < 1.5


async def test_nothing_listening_is_unavailable_after_the_retries() -> None:
    async with ScriptedClient.connect(f"127.0.0.1:{free_port()}", retry=FAST) as client:
        with pytest.raises(ScriptedError) as caught:
            await client.echo("hello", timeout_s=10)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE and caught.value.attempts == FAST.attempts


async def test_unary_call_alone_raises_the_base_error(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.script = [grpc.StatusCode.UNAVAILABLE, None]
    retries: list[None] = []
    async with grpc.aio.insecure_channel(address) as channel:
        echo = channel.unary_unary(
            f"/{SERVICE}/Echo", request_serializer=Text.SerializeToString, response_deserializer=Text.FromString
        )
        reply = await unary_call(
            echo, Text(value="hi"), method="Echo", timeout_s=10, retry=FAST, on_retry=lambda: retries.append(None)
        )
        assert reply.value == "hi" and len(retries) == 1
        servicer.always = grpc.StatusCode.NOT_FOUND
        with pytest.raises(RpcCallError) as caught:
            await unary_call(echo, Text(value="hi"), method="Echo", timeout_s=10, retry=FAST)
    assert type(caught.value) is RpcCallError and caught.value.code == grpc.StatusCode.NOT_FOUND


async def test_stream_is_retried_only_before_its_first_message(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.script = [grpc.StatusCode.UNAVAILABLE]
    async with ScriptedClient.connect(address, retry=FAST) as client:
        assert [value async for value in client.count(timeout_s=10)] == ["1", "2"]
        assert servicer.calls == 2 and client.retries == 1

        servicer.calls, servicer.fail_after_first = 0, grpc.StatusCode.UNAVAILABLE
        seen: list[str] = []
        with pytest.raises(ScriptedError) as caught:
            async for value in client.count(timeout_s=10):
                seen.append(value)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE and servicer.calls == 1 and seen == ["1"]


async def test_a_reader_that_stops_early_cancels_the_stream(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.hold_after_first_s = 60.0
    async with ScriptedClient.connect(address, retry=FAST) as client:
        async with contextlib.aclosing(client.count(timeout_s=120)) as values:
            async for value in values:
                assert value == "1"
                break
        await asyncio.wait_for(servicer.cancelled.wait(), 10)


async def test_only_a_channel_the_client_opened_is_closed(scripted: tuple[Scripted, str]) -> None:
    _, address = scripted
    async with grpc.aio.insecure_channel(address) as channel:
        async with ScriptedClient(channel, retry=FAST) as client:
            assert await client.echo("a", timeout_s=10) == "a"
        assert await ScriptedClient(channel).echo("b", timeout_s=10) == "b"  # still open
    opened = ScriptedClient.connect(address, retry=FAST, token="secret")
    assert isinstance(opened, ScriptedClient) and opened._metadata == (("authorization", "Bearer secret"),)
    await opened.close()
    with pytest.raises(grpc.aio.UsageError):
        await opened.echo_rpc(Text(value="c"), timeout=1)


async def test_timeout_must_be_positive() -> None:
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
        with pytest.raises(ValueError):
            ScriptedClient(channel, timeout_s=0)
