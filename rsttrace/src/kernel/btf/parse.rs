//! Reading BTF in place: the header and sections, the index of where each
//! type record starts, and the kind-specific data of one record.

use super::{Btf, BtfError, Kind, Member, Type};

const BTF_MAGIC: u16 = 0xeb9f;

fn word(data: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(data[i * 4..i * 4 + 4].try_into().expect("4 bytes"))
}

fn string_at(strings: &[u8], off: u32) -> &str {
    let start = off as usize;
    if start >= strings.len() {
        return "";
    }
    let end = strings[start..]
        .iter()
        .position(|&b| b == 0)
        .map_or(strings.len(), |p| start + p);
    std::str::from_utf8(&strings[start..end]).unwrap_or("")
}

impl<'a> Type<'a> {
    /// Struct/union members.
    pub(crate) fn members(&self) -> impl Iterator<Item = Member<'a>> + 'a {
        let (extra, strings, flag) = (self.extra, self.strings, self.kind_flag);
        let n = if matches!(self.kind, Kind::Struct | Kind::Union) {
            self.vlen
        } else {
            0
        };
        (0..n).map(move |i| {
            let off = word(extra, i * 3 + 2);
            let (bit_offset, bitfield_size) = if flag {
                (off & 0x00ff_ffff, off >> 24)
            } else {
                (off, 0)
            };
            Member {
                name: string_at(strings, word(extra, i * 3)),
                type_id: word(extra, i * 3 + 1),
                bit_offset,
                bitfield_size,
            }
        })
    }

    /// Enumerators of Enum/Enum64.
    pub(crate) fn enumerators(&self) -> impl Iterator<Item = (&'a str, i64)> + 'a {
        let (extra, strings, flag, kind) = (self.extra, self.strings, self.kind_flag, self.kind);
        let n = if matches!(kind, Kind::Enum | Kind::Enum64) {
            self.vlen
        } else {
            0
        };
        (0..n).map(move |i| {
            if kind == Kind::Enum64 {
                let v =
                    (u64::from(word(extra, i * 3 + 2)) << 32) | u64::from(word(extra, i * 3 + 1));
                (string_at(strings, word(extra, i * 3)), v as i64)
            } else {
                let raw = word(extra, i * 2 + 1);
                let v = if flag {
                    i64::from(raw as i32)
                } else {
                    i64::from(raw)
                };
                (string_at(strings, word(extra, i * 2)), v)
            }
        })
    }

    /// FuncProto parameters: (name, type id).
    pub(crate) fn params(&self) -> impl Iterator<Item = (&'a str, u32)> + 'a {
        let (extra, strings) = (self.extra, self.strings);
        let n = if self.kind == Kind::FuncProto {
            self.vlen
        } else {
            0
        };
        (0..n).map(move |i| {
            (
                string_at(strings, word(extra, i * 2)),
                word(extra, i * 2 + 1),
            )
        })
    }

    /// Array: (element type, number of elements).
    pub(crate) fn array(&self) -> Option<(u32, u32)> {
        (self.kind == Kind::Array).then(|| (word(self.extra, 0), word(self.extra, 2)))
    }
}

/// Bytes of kind-specific data after a type's 12-byte header.
fn extra_len(kind: Kind, vlen: usize) -> usize {
    match kind {
        Kind::Int | Kind::Var | Kind::DeclTag => 4,
        Kind::Array => 12,
        Kind::Struct | Kind::Union | Kind::DataSec | Kind::Enum64 => 12 * vlen,
        Kind::Enum | Kind::FuncProto => 8 * vlen,
        Kind::Ptr
        | Kind::Fwd
        | Kind::Typedef
        | Kind::Volatile
        | Kind::Const
        | Kind::Restrict
        | Kind::Func
        | Kind::Float
        | Kind::TypeTag => 0,
    }
}

fn le_u32(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .ok_or(BtfError::Truncated)
}

impl<'a> Btf<'a> {
    /// Parses little-endian BTF (the byte order is checked by the magic).
    pub(crate) fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        let magic = data
            .get(0..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or(BtfError::Truncated)?;
        if magic != BTF_MAGIC {
            return Err(BtfError::BadMagic);
        }
        let hdr_len = le_u32(data, 4)? as usize;
        let type_off = le_u32(data, 8)? as usize;
        let type_len = le_u32(data, 12)? as usize;
        let str_off = le_u32(data, 16)? as usize;
        let str_len = le_u32(data, 20)? as usize;
        let types = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Truncated)?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Truncated)?;
        let mut offsets = Vec::with_capacity(types.len() / 24);
        let mut pos = 0usize;
        while pos < types.len() {
            let info = le_u32(types, pos + 4)?;
            let kind = Kind::from_raw((info >> 24) & 0x1f)?;
            let end = pos + 12 + extra_len(kind, (info & 0xffff) as usize);
            if end > types.len() {
                return Err(BtfError::Truncated);
            }
            offsets.push(pos as u32);
            pos = end;
        }
        Ok(Btf {
            types,
            strings,
            offsets,
        })
    }

    /// The type with this id (0 is `void`, which has no record).
    pub(crate) fn get(&self, id: u32) -> Option<Type<'a>> {
        let pos = *self.offsets.get((id as usize).checked_sub(1)?)? as usize;
        let t = &self.types[pos..];
        let info = word(t, 1);
        let kind = Kind::from_raw((info >> 24) & 0x1f).ok()?;
        let vlen = (info & 0xffff) as usize;
        Some(Type {
            kind,
            name: string_at(self.strings, word(t, 0)),
            size_or_type: word(t, 2),
            vlen,
            kind_flag: info >> 31 == 1,
            extra: &t[12..12 + extra_len(kind, vlen)],
            strings: self.strings,
        })
    }

    pub(super) fn all(&self) -> impl Iterator<Item = (u32, Type<'a>)> + '_ {
        (1..=self.offsets.len() as u32).filter_map(move |id| Some((id, self.get(id)?)))
    }
}
