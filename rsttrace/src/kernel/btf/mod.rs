//! A small reader for the kernel's BTF (`/sys/kernel/btf/vmlinux`): enough to
//! find struct member offsets by name (through anonymous unions and nested
//! members), enum values by name, and the argument names of BTF tracepoints.
//!
//! Format: include/uapi/linux/btf.h and Documentation/bpf/btf.rst.
//!
//! Why our own parser, when aya parses the same BTF to load the programs:
//! aya re-exports only `Btf` and `BtfError` from aya-obj (`aya::Btf` is
//! `aya_obj::btf::Btf`), and aya-obj 0.3.0's public API on it is the loader's:
//! parse, `id_by_type_name_kind`, add types, serialize, sanitize.  Reading a
//! type back is crate-private there: `Btf::types()`, `type_by_id()` and
//! `string_at()` are `pub(crate)`; the `BtfType` variants are public types
//! with `pub(crate)` fields (struct/union members, enum variants,
//! function-prototype parameters, the target of a pointer or typedef), and
//! the accessors for them (`members()`, `member_bit_offset()`,
//! `member_bit_field_size()`, `kind()`, `name_offset()`) are `pub(crate)`
//! too.  So outside aya-obj a type id can be looked up by name and kind,
//! but not its members with their bit offsets and bitfield sizes, an enum's
//! values by name, or the prototype behind a tracepoint's `btf_trace_<name>`
//! typedef.  The BTF reader crate btf-rs is LGPL, which does not fit this
//! MIT OR Apache-2.0 project.
//!
//! The parser is checked against the running kernel's BTF
//! (`tests::reads_this_kernel`) as well as against small blobs written by
//! `testing::Builder`.
//!
//! Layout: this file has the types and the public API; `parse` reads the
//! sections and the type records, `query` answers questions by name.

use thiserror::Error;

mod parse;
mod query;
#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod testing;

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum BtfError {
    #[error("not BTF data (bad magic)")]
    BadMagic,
    #[error("BTF data is truncated")]
    Truncated,
    #[error("unknown BTF kind {0}")]
    UnknownKind(u32),
}

/// BTF type kinds (BTF_KIND_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    DataSec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    fn from_raw(raw: u32) -> Result<Self, BtfError> {
        Ok(match raw {
            1 => Kind::Int,
            2 => Kind::Ptr,
            3 => Kind::Array,
            4 => Kind::Struct,
            5 => Kind::Union,
            6 => Kind::Enum,
            7 => Kind::Fwd,
            8 => Kind::Typedef,
            9 => Kind::Volatile,
            10 => Kind::Const,
            11 => Kind::Restrict,
            12 => Kind::Func,
            13 => Kind::FuncProto,
            14 => Kind::Var,
            15 => Kind::DataSec,
            16 => Kind::Float,
            17 => Kind::DeclTag,
            18 => Kind::TypeTag,
            19 => Kind::Enum64,
            other => return Err(BtfError::UnknownKind(other)),
        })
    }
}

/// A struct/union member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member<'a> {
    pub name: &'a str,
    pub type_id: u32,
    /// Offset from the start of the containing struct, in bits.
    pub bit_offset: u32,
    /// Width in bits for a bitfield, 0 otherwise.
    pub bitfield_size: u32,
}

/// One type, decoded on demand from the raw section.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Type<'a> {
    pub kind: Kind,
    pub name: &'a str,
    /// `size` for Int/Struct/Union/Enum/Float/DataSec, referenced type id
    /// otherwise.
    pub size_or_type: u32,
    vlen: usize,
    kind_flag: bool,
    /// The kind-specific data after the common header.
    extra: &'a [u8],
    strings: &'a [u8],
}

/// Where a (possibly nested) member lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    /// From the start of the outermost struct, in bits.
    pub bit_offset: u32,
    pub bitfield_size: u32,
    pub type_id: u32,
}

impl Location {
    /// Byte offset, when the member is byte-aligned and not a bitfield.
    pub(crate) fn byte_offset(&self) -> Option<u32> {
        (self.bitfield_size == 0 && self.bit_offset.is_multiple_of(8))
            .then_some(self.bit_offset / 8)
    }
}

/// Kernel BTF, read in place: an index of where each type starts, and
/// nothing decoded until asked (vmlinux has ~150k types; decoding them all
/// once cost rsttrace ~47 MB of peak memory).
pub(crate) struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// Offset in `types` of type id `i + 1`.
    offsets: Vec<u32>,
}
