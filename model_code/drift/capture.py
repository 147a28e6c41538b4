"""Reading capture files: SageMaker's data-capture JSONL records (msgspec), in blocks of records whose
payloads are parsed together (payloads.py), filtered by the time window."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec
import numpy as np

from model_code.drift.core import BLOCK_RECORDS, Block, CaptureData, CaptureError, UsageError, Window, iso, parse_time
from model_code.drift.payloads import parse_block
from model_code.schema import Schema


def text_lines(text: str) -> list[str]:
    """The non-blank lines of a text, split on newlines only (str.splitlines also splits on U+2028, form feeds and
    other separators a JSON string or a CSV field may hold)."""
    return [line.removesuffix("\r") for line in text.split("\n") if line.strip()]


def jsonlines_as_list(lines: list[str]) -> str:
    """JSON Lines (one row or prediction per line) as one JSON list, which the payload parsers read."""
    return "[" + ",".join(lines) + "]"


def decode_payload(obj: Any, side: str, source: str, line: int) -> tuple[str, str]:
    if not isinstance(obj, dict):
        raise CaptureError(f"{source} line {line}: captureData.{side} is missing or not an object")
    data, encoding = obj.get("data"), str(obj.get("encoding", "")).upper()
    ctype = str(obj.get("observedContentType", "")).split(";")[0].strip().lower()
    if not isinstance(data, str):
        raise CaptureError(f"{source} line {line}: captureData.{side}.data is missing or not a string")
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            raise CaptureError(f"{source} line {line}: captureData.{side}.data is not base64 "
                               f"UTF-8 text: {exc}") from None
        encoding = "JSON" if ctype.endswith(("json", "jsonlines")) else "CSV" if ctype.endswith("csv") else ""
    if encoding == "CSV":
        return "csv", data
    if encoding == "JSON" and ctype.endswith("jsonlines"):
        return "json", jsonlines_as_list(text_lines(data))
    if encoding == "JSON":
        return "json", data
    raise CaptureError(f"{source} line {line}: captureData.{side}: cannot read encoding "
                       f"{obj.get('encoding')!r} with content type {ctype!r}; expected CSV, JSON, or "
                       "BASE64 of text/csv, application/json or application/jsonlines")


def _general_blocks(lines: Iterable[tuple[int, bytes]], source: str, window: Window, acc: CaptureData,
                    ) -> Iterator[Block]:
    """Blocks of the (line number, bytes) lines, a record at a time: any record SageMaker's format allows,
    and the first that does not fit named by its line."""
    start = iso(window.start) if window.start else None
    end = iso(window.end) if window.end else None
    block = Block(source)
    loads = msgspec.json.decode
    for lineno, line in lines:
        if not line or line.isspace():
            continue
        try:
            rec = loads(line)
            cap = rec["captureData"]
            meta = rec.get("eventMetadata") or {}
            t = meta.get("inferenceTime", "")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise _not_a_record(line, source, lineno) from None
        if start is not None or end is not None:
            if not isinstance(t, str):
                raise CaptureError(f"{source} line {lineno}: eventMetadata.inferenceTime {t!r} is not an "
                                   "ISO 8601 time")
            if len(t) == 20 and t[-1] == "Z":   # the format SageMaker and serve write: compare as text
                ts = t
            else:
                try:
                    ts = iso(parse_time(t, "inferenceTime")) or ""
                except UsageError:
                    raise CaptureError(f"{source} line {lineno}: eventMetadata.inferenceTime {t!r} is "
                                       "not an ISO 8601 time") from None
            if (start is not None and ts < start) or (end is not None and ts >= end):
                acc.outside_window += 1
                continue
        block.lines.append(lineno)
        block.events.append(meta.get("eventId", "?"))
        inp, out = cap.get("endpointInput"), cap.get("endpointOutput")
        in_kind, in_text = decode_payload(inp, "endpointInput", source, lineno)
        out_kind, out_text = ("none", "") if out is None else decode_payload(out, "endpointOutput", source, lineno)
        block.in_kinds.append(in_kind)
        block.in_texts.append(in_text)
        block.out_kinds.append(out_kind)
        block.out_texts.append(out_text)
        if len(block.lines) >= BLOCK_RECORDS:
            yield block
            block = Block(source)
    if block.lines:
        yield block


def chunks(fh: Any, size: int = 1 << 23) -> Iterator[bytes]:
    """Read a binary file in ~8 MB chunks of whole lines (the last may lack its newline)."""
    rest = b""
    while True:
        data = fh.read(size)
        if not data:
            break
        data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            rest = data
            continue
        rest = data[cut:]
        yield data[:cut]
    if rest:
        yield rest


def _not_a_record(line: bytes, source: str, lineno: int) -> CaptureError:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return CaptureError(f"{source} line {lineno}: not UTF-8 text: {exc}")
    return CaptureError(f"{source} line {lineno}: not a SageMaker data-capture record (expected a JSON object "
                        "with captureData.endpointInput/endpointOutput)")


class _Payload(msgspec.Struct, frozen=True, gc=False):
    data: str
    encoding: str = ""
    observedContentType: str = ""


class _Capture(msgspec.Struct, frozen=True, gc=False):
    endpointInput: _Payload
    endpointOutput: _Payload | None = None


class _Metadata(msgspec.Struct, frozen=True, gc=False):
    inferenceTime: str = ""
    eventId: str = "?"


class _Record(msgspec.Struct, frozen=True, gc=False):
    """The fields of a capture record the job reads, as msgspec decodes them (the others are skipped)."""

    captureData: _Capture
    eventMetadata: _Metadata = _Metadata()


_RECORDS = msgspec.json.Decoder(_Record)


def _chunk_blocks(chunk: bytes, first: int, source: str, window: Window, acc: CaptureData) -> Iterator[Block]:
    """The blocks of one chunk of whole lines, numbered from `first`. Records as serve and SageMaker write
    them (CSV text both ways, times like 2024-05-01T12:00:00Z) are decoded by msgspec, the chunk at once,
    and taken a field at a time; the others, and every line of a chunk msgspec refuses or holding a blank
    line, are read a record at a time by `_general_blocks`, which names the first line at fault."""
    ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)  # where each line ends
    if not chunk.endswith(b"\n"):
        ends = np.append(ends, len(chunk))
    starts = np.concatenate(([0], ends[:-1] + 1))

    def line(k: int) -> bytes:
        return chunk[starts[k]:ends[k]]

    try:
        records = _RECORDS.decode_lines(chunk)
    except msgspec.DecodeError:
        records = None
    # decode_lines splits at any whitespace and skips blank lines: its records are the lines only when
    # there are as many and every line starts one (no blank line, so no line holds two)
    one_per_line = bool((ends > starts).all()) and bool((np.frombuffer(chunk, np.uint8)[starts] == ord("{")).all())
    if records is None or len(records) != len(ends) or not one_per_line:
        yield from _general_blocks([(first + k, line(k)) for k in range(len(ends))], source, window, acc)
        return
    common = [k for k, r in enumerate(records)  # the common shape, inline (not a call per record)
              if (c := r.captureData).endpointInput.encoding == "CSV" and (o := c.endpointOutput) is not None
              and o.encoding == "CSV" and len(t := r.eventMetadata.inferenceTime) == 20 and t[19] == "Z"]
    if window.start is not None or window.end is not None:
        start, end = iso(window.start) or "", iso(window.end) or "\x7f"
        inside = [k for k in common if start <= records[k].eventMetadata.inferenceTime < end]
        acc.outside_window += len(common) - len(inside)
    else:
        inside = common
    for at in range(0, len(inside), BLOCK_RECORDS):
        keep = inside[at:at + BLOCK_RECORDS]
        captures = [records[k].captureData for k in keep]
        yield Block(source, lines=[first + k for k in keep], events=[records[k].eventMetadata.eventId for k in keep],
                    in_kinds=["csv"] * len(keep), in_texts=[c.endpointInput.data for c in captures],
                    out_kinds=["csv"] * len(keep),
                    out_texts=[c.endpointOutput.data for c in captures])  # type: ignore[union-attr]
    if len(common) < len(records):
        taken = set(common)
        others = [(first + k, line(k)) for k in range(len(records)) if k not in taken]
        yield from _general_blocks(others, source, window, acc)


def read_chunks(chunks: Iterable[bytes], source: str, schema: Schema, window: Window = Window()) -> CaptureData:
    """Parse one capture file, given as chunks of whole lines (see `chunks`), into a CaptureData."""
    acc = CaptureData(schema)
    acc.files = 1
    first = 1
    for chunk in chunks:
        for block in _chunk_blocks(chunk, first, source, window, acc):
            parse_block(block, schema, acc)
        first += chunk.count(b"\n") + (not chunk.endswith(b"\n"))
    return acc
