//! Pure decoders of OS event payloads: `&[u8]` in, typed records or a typed
//! error with the byte offset out. No OS calls, no `unsafe`, no panics.
