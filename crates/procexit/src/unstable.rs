//! Internals made public only for the fuzz targets, tests and benchmarks:
//! the raw payload decoders, the `.etl` record layouts and the LZ77 Xpress
//! decompressor. Not part of the API and hidden from its documentation:
//! anything here may change or go in any release. Programs use
//! [`Monitor`](crate::Monitor), [`etl`](crate::etl) and
//! [`schema`](crate::schema).

/// The raw decoders of OS payloads (`&[u8]` in, typed records out).
pub mod decode {
    pub use crate::decode::*;
}

/// The `.etl` buffer and record header layouts.
pub mod layout {
    pub use crate::etl::layout::*;
}

/// The LZ77 Xpress decompressor of compressed `.etl` buffers.
pub mod xpress {
    pub use crate::etl::xpress::*;
}
