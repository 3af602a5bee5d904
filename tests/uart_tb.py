"""Amaranth-simulator helpers that drive and read a UART line bit by bit (tests only)."""


async def uart_send(ctx, line, data: bytes, divisor: int):
    for b in data:
        frame = [0] + [(b >> i) & 1 for i in range(8)] + [1]
        for bit in frame:
            ctx.set(line, bit)
            await ctx.tick().repeat(divisor)


async def uart_recv(ctx, line, n: int, divisor: int, timeout: int = 10**6) -> bytes:
    out = bytearray()
    for _ in range(n):
        waited = 0
        while ctx.get(line):
            await ctx.tick()
            waited += 1
            if waited > timeout:
                raise TimeoutError(f"no start bit after {len(out)} of {n} bytes")
        await ctx.tick().repeat(divisor // 2)
        assert ctx.get(line) == 0, "start bit glitch"
        b = 0
        for i in range(8):
            await ctx.tick().repeat(divisor)
            b |= ctx.get(line) << i
        await ctx.tick().repeat(divisor)
        assert ctx.get(line) == 1, "stop bit missing"
        out.append(b)
    return bytes(out)


async def uart_recv_frame(ctx, line, divisor: int, timeout: int = 10**6) -> bytes:
    """One reply frame (``hw/protocol.py``): its header, then as many bytes as it says."""
    from hw.protocol import CRC_BYTES, REPLY_HEADER
    head = await uart_recv(ctx, line, REPLY_HEADER, divisor, timeout)
    n = int.from_bytes(head[4:6], "little")
    return head + await uart_recv(ctx, line, n + CRC_BYTES, divisor, timeout)
