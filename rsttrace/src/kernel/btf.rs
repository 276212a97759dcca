//! A small reader for the kernel's BTF (`/sys/kernel/btf/vmlinux`): enough to
//! find struct member offsets by name (through anonymous unions and nested
//! members), enum values by name, and the argument names of BTF tracepoints.
//!
//! Format: include/uapi/linux/btf.h and Documentation/bpf/btf.rst.

use thiserror::Error;

const BTF_MAGIC: u16 = 0xeb9f;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("not BTF data (bad magic)")]
    BadMagic,
    #[error("BTF data is truncated")]
    Truncated,
    #[error("unknown BTF kind {0}")]
    UnknownKind(u32),
}

/// BTF type kinds (BTF_KIND_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
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
pub struct Member<'a> {
    pub name: &'a str,
    pub type_id: u32,
    /// Offset from the start of the containing struct, in bits.
    pub bit_offset: u32,
    /// Width in bits for a bitfield, 0 otherwise.
    pub bitfield_size: u32,
}

/// One type, decoded on demand from the raw section.
#[derive(Debug, Clone, Copy)]
pub struct Type<'a> {
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
    pub fn members(&self) -> impl Iterator<Item = Member<'a>> + 'a {
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
    pub fn enumerators(&self) -> impl Iterator<Item = (&'a str, i64)> + 'a {
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
    pub fn params(&self) -> impl Iterator<Item = (&'a str, u32)> + 'a {
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
    pub fn array(&self) -> Option<(u32, u32)> {
        (self.kind == Kind::Array).then(|| (word(self.extra, 0), word(self.extra, 2)))
    }
}

/// Where a (possibly nested) member lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// From the start of the outermost struct, in bits.
    pub bit_offset: u32,
    pub bitfield_size: u32,
    pub type_id: u32,
}

impl Location {
    /// Byte offset, when the member is byte-aligned and not a bitfield.
    pub fn byte_offset(&self) -> Option<u32> {
        (self.bitfield_size == 0 && self.bit_offset.is_multiple_of(8))
            .then_some(self.bit_offset / 8)
    }
}

/// Kernel BTF, read in place: an index of where each type starts, and
/// nothing decoded until asked (vmlinux has ~150k types; decoding them all
/// once cost rsttrace ~47 MB of peak memory).
pub struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// Offset in `types` of type id `i + 1`.
    offsets: Vec<u32>,
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
    pub fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
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
    pub fn get(&self, id: u32) -> Option<Type<'a>> {
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

    fn all(&self) -> impl Iterator<Item = (u32, Type<'a>)> + '_ {
        (1..=self.offsets.len() as u32).filter_map(move |id| Some((id, self.get(id)?)))
    }

    /// A named type of one of `kinds`, preferring a complete definition
    /// (a forward declaration has size 0).
    fn find(&self, name: &str, kinds: &[Kind]) -> Option<u32> {
        let mut first = None;
        for (id, t) in self.all() {
            if kinds.contains(&t.kind) && t.name == name {
                if t.size_or_type != 0 || t.kind == Kind::Typedef {
                    return Some(id);
                }
                first.get_or_insert(id);
            }
        }
        first
    }

    /// Whether the kernel has a function of this name.
    pub fn has_func(&self, name: &str) -> bool {
        self.find(name, &[Kind::Func]).is_some()
    }

    pub fn struct_id(&self, name: &str) -> Option<u32> {
        self.find(name, &[Kind::Struct])
    }

    /// Skips typedefs and qualifiers.
    pub fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.get(id) {
                Some(t)
                    if matches!(
                        t.kind,
                        Kind::Typedef
                            | Kind::Volatile
                            | Kind::Const
                            | Kind::Restrict
                            | Kind::TypeTag
                    ) =>
                {
                    id = t.size_or_type
                }
                _ => break,
            }
        }
        id
    }

    /// Size in bytes of a type.
    pub fn size_of(&self, id: u32) -> Option<u32> {
        let id = self.resolve(id);
        let t = self.get(id)?;
        match t.kind {
            Kind::Int | Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 | Kind::Float => {
                Some(t.size_or_type)
            }
            Kind::Ptr => Some(8),
            Kind::Array => {
                let (elem, n) = t.array()?;
                Some(self.size_of(elem)? * n)
            }
            _ => None,
        }
    }

    /// Finds a member by name in a struct or union, descending into
    /// anonymous struct/union members.  Offsets are relative to `id`.
    fn member(&self, id: u32, name: &str) -> Option<Location> {
        let t = self.get(self.resolve(id))?;
        if !matches!(t.kind, Kind::Struct | Kind::Union) {
            return None;
        }
        if let Some(m) = t.members().find(|m| m.name == name) {
            return Some(Location {
                bit_offset: m.bit_offset,
                bitfield_size: m.bitfield_size,
                type_id: m.type_id,
            });
        }
        t.members().filter(|m| m.name.is_empty()).find_map(|m| {
            self.member(m.type_id, name).map(|inner| Location {
                bit_offset: m.bit_offset + inner.bit_offset,
                ..inner
            })
        })
    }

    /// Location of `path` (`"a.b.c"`) inside struct `struct_name`.
    pub fn member_path(&self, struct_name: &str, path: &str) -> Option<Location> {
        let mut id = self.struct_id(struct_name)?;
        let mut total = 0;
        let mut last = None;
        for part in path.split('.') {
            let loc = self.member(id, part)?;
            total += loc.bit_offset;
            id = loc.type_id;
            last = Some(Location {
                bit_offset: total,
                ..loc
            });
        }
        last
    }

    /// Enumerators of the named enum.
    pub fn enum_values(&self, name: &str) -> Option<Vec<(&'a str, i64)>> {
        let id = self.find(name, &[Kind::Enum, Kind::Enum64])?;
        Some(self.get(id)?.enumerators().collect())
    }

    /// Enumerators of the (possibly anonymous) enum that defines `name`.
    pub fn enum_containing(&self, name: &str) -> Option<Vec<(&'a str, i64)>> {
        self.all()
            .map(|(_, t)| t)
            .find(|t| t.enumerators().any(|(n, _)| n == name))
            .map(|t| t.enumerators().collect())
    }

    /// A short description of a type for signature checks: `*sock` for a
    /// pointer to struct sock, `enum sk_rst_reason`, `int`.
    pub fn describe(&self, id: u32) -> String {
        let id = self.resolve(id);
        let Some(t) = self.get(id) else {
            return if id == 0 { "void".into() } else { "?".into() };
        };
        match t.kind {
            Kind::Ptr => format!("*{}", self.describe(t.size_or_type)),
            Kind::Enum | Kind::Enum64 => format!("enum {}", t.name),
            _ => t.name.to_string(),
        }
    }

    /// Argument types of BTF tracepoint `name` (see [`Btf::describe`]),
    /// from the typedef `btf_trace_<name>`: a pointer to a function whose
    /// first parameter is the tracepoint's private data, not an argument.
    pub fn tracepoint_args(&self, name: &str) -> Option<Vec<String>> {
        let typedef = self.find(&format!("btf_trace_{name}"), &[Kind::Typedef])?;
        let ptr = self
            .get(self.resolve(typedef))
            .filter(|t| t.kind == Kind::Ptr)?;
        let proto = self
            .get(ptr.size_or_type)
            .filter(|t| t.kind == Kind::FuncProto)?;
        Some(
            proto
                .params()
                .skip(1)
                .map(|(_, ty)| self.describe(ty))
                .collect(),
        )
    }
}

/// Builds BTF blobs for tests (here and in other modules).
#[cfg(test)]
pub mod testing {
    /// A minimal BTF writer: call the `add_*` methods, then `build`.
    #[derive(Default)]
    pub struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        pub fn new() -> Self {
            Builder {
                types: vec![],
                strings: vec![0],
                next_id: 1,
            }
        }

        fn str(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn header(&mut self, name: &str, kind: u32, vlen: u32, kind_flag: bool, size: u32) -> u32 {
            let name = self.str(name);
            let info = (u32::from(kind_flag) << 31) | (kind << 24) | vlen;
            for v in [name, info, size] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        fn word(&mut self, v: u32) {
            self.types.extend_from_slice(&v.to_le_bytes());
        }

        pub fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.header(name, 1, 0, false, size);
            self.word(size * 8);
            id
        }

        pub fn ptr(&mut self, to: u32) -> u32 {
            self.header("", 2, 0, false, to)
        }

        pub fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.header(name, 8, 0, false, to)
        }

        pub fn array(&mut self, elem: u32, index: u32, n: u32) -> u32 {
            let id = self.header("", 3, 0, false, 0);
            self.word(elem);
            self.word(index);
            self.word(n);
            id
        }

        /// Members: (name, type, bit offset, bitfield size).
        pub fn composite(
            &mut self,
            union: bool,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            let bitfields = members.iter().any(|m| m.3 != 0);
            let kind = if union { 5 } else { 4 };
            let id = self.header(name, kind, members.len() as u32, bitfields, size);
            for &(m_name, m_type, bit_off, bits) in members {
                let off = self.str(m_name);
                self.word(off);
                self.word(m_type);
                self.word(if bitfields {
                    (bits << 24) | bit_off
                } else {
                    bit_off
                });
            }
            id
        }

        pub fn enumeration(&mut self, name: &str, values: &[(&str, i32)]) -> u32 {
            let id = self.header(name, 6, values.len() as u32, false, 4);
            for &(v_name, v) in values {
                let off = self.str(v_name);
                self.word(off);
                self.word(v as u32);
            }
            id
        }

        pub fn func_proto(&mut self, ret: u32, params: &[(&str, u32)]) -> u32 {
            let id = self.header("", 13, params.len() as u32, false, ret);
            for &(p_name, p_type) in params {
                let off = self.str(p_name);
                self.word(off);
                self.word(p_type);
            }
            id
        }

        pub fn build(&self) -> Vec<u8> {
            let mut out = vec![];
            out.extend_from_slice(&0xeb9fu16.to_le_bytes());
            out.push(1);
            out.push(0);
            let hdr_len = 24u32;
            for v in [
                hdr_len,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Builder;
    use super::*;

    #[test]
    fn reads_this_kernel() {
        // The real thing, when the host has it: the members rsttrace needs.
        let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            return;
        };
        let btf = Btf::parse(&data).unwrap();
        assert!(btf.member_path("sock_common", "skc_state").is_some());
        assert!(btf.tracepoint_args("tcp_send_reset").is_some());
        assert!(btf.enum_containing("TCP_LISTEN").is_some());
    }

    fn sample() -> Vec<u8> {
        let mut b = Builder::new();
        let u8_t = b.int("unsigned char", 1);
        let u16_t = b.int("short unsigned int", 2);
        let u32_t = b.int("unsigned int", 4);
        let be32 = b.typedef("__be32", u32_t);
        // struct { __be32 skc_daddr; __be32 skc_rcv_saddr; } inside a union
        let pair = b.composite(
            false,
            "",
            8,
            &[("skc_daddr", be32, 0, 0), ("skc_rcv_saddr", be32, 32, 0)],
        );
        let addr_union = b.composite(
            true,
            "",
            8,
            &[("skc_addrpair", u32_t, 0, 0), ("", pair, 0, 0)],
        );
        let ns_common = b.composite(
            false,
            "ns_common",
            8,
            &[("stashed", u32_t, 0, 0), ("inum", u32_t, 32, 0)],
        );
        let net = b.composite(
            false,
            "net",
            64,
            &[("passive", u32_t, 0, 0), ("ns", ns_common, 128, 0)],
        );
        let net_ptr = b.ptr(net);
        let sock_common = b.composite(
            false,
            "sock_common",
            32,
            &[
                ("", addr_union, 0, 0),
                ("skc_state", u8_t, 64, 0),
                ("skc_net", net_ptr, 128, 0),
            ],
        );
        b.composite(
            false,
            "sock",
            48,
            &[
                ("__sk_common", sock_common, 0, 0),
                ("sk_shutdown", u8_t, 264, 2),
                ("sk_protocol", u16_t, 272, 0),
            ],
        );
        b.enumeration(
            "sk_rst_reason",
            &[
                ("SK_RST_REASON_NOT_SPECIFIED", 0),
                ("SK_RST_REASON_NO_SOCKET", 1),
            ],
        );
        b.enumeration("", &[("TCP_ESTABLISHED", 1), ("TCP_LISTEN", 10)]);
        let void_ptr = b.ptr(0);
        let fwd = b.struct_placeholder();
        let sock_ptr = b.ptr(fwd);
        let reason = b.enumeration("sk_rst_reason", &[]);
        let proto = b.func_proto(
            0,
            &[("", void_ptr), ("", sock_ptr), ("", void_ptr), ("", reason)],
        );
        let proto_ptr = b.ptr(proto);
        b.typedef("btf_trace_tcp_send_reset", proto_ptr);
        let arr = b.array(u8_t, u32_t, 16);
        b.composite(false, "task_struct", 32, &[("comm", arr, 64, 0)]);
        b.build()
    }

    impl Builder {
        fn struct_placeholder(&mut self) -> u32 {
            self.composite(false, "fwd_sock", 0, &[])
        }
    }

    #[test]
    fn members_through_anonymous_unions() {
        let data = sample();
        let btf = Btf::parse(&data).unwrap();
        let daddr = btf.member_path("sock_common", "skc_daddr").unwrap();
        assert_eq!(daddr.byte_offset(), Some(0));
        let saddr = btf.member_path("sock_common", "skc_rcv_saddr").unwrap();
        assert_eq!(saddr.byte_offset(), Some(4));
        assert_eq!(btf.size_of(saddr.type_id), Some(4));
        assert_eq!(
            btf.member_path("sock_common", "skc_state")
                .unwrap()
                .byte_offset(),
            Some(8)
        );
        assert!(btf.member_path("sock_common", "nope").is_none());
        assert!(btf.member_path("nosuch", "skc_state").is_none());
    }

    #[test]
    fn nested_paths_sum_offsets() {
        let data = sample();
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(
            btf.member_path("net", "ns.inum").unwrap().byte_offset(),
            Some(20)
        );
        assert_eq!(
            btf.member_path("sock", "__sk_common.skc_state")
                .unwrap()
                .byte_offset(),
            Some(8)
        );
    }

    #[test]
    fn bitfields_have_no_byte_offset() {
        let data = sample();
        let btf = Btf::parse(&data).unwrap();
        let shutdown = btf.member_path("sock", "sk_shutdown").unwrap();
        assert_eq!(shutdown.bitfield_size, 2);
        assert_eq!(shutdown.bit_offset, 264);
        assert_eq!(shutdown.byte_offset(), None);
        let proto = btf.member_path("sock", "sk_protocol").unwrap();
        assert_eq!(proto.byte_offset(), Some(34));
        assert_eq!(btf.size_of(proto.type_id), Some(2));
    }

    #[test]
    fn arrays_have_sizes() {
        let data = sample();
        let btf = Btf::parse(&data).unwrap();
        let comm = btf.member_path("task_struct", "comm").unwrap();
        assert_eq!(comm.byte_offset(), Some(8));
        assert_eq!(btf.size_of(comm.type_id), Some(16));
    }

    #[test]
    fn enums_by_name_and_anonymous() {
        let data = sample();
        let btf = Btf::parse(&data).unwrap();
        let reasons = btf.enum_values("sk_rst_reason").unwrap();
        assert_eq!(reasons[1], ("SK_RST_REASON_NO_SOCKET", 1));
        let states = btf.enum_containing("TCP_LISTEN").unwrap();
        assert!(states.contains(&("TCP_LISTEN", 10)));
        assert!(btf.enum_containing("TCP_NOPE").is_none());
    }

    #[test]
    fn tracepoint_args_skip_private_data() {
        let data = sample();
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(
            btf.tracepoint_args("tcp_send_reset").unwrap(),
            vec![
                "*fwd_sock".to_string(),
                "*void".to_string(),
                "enum sk_rst_reason".to_string()
            ]
        );
        assert!(btf.tracepoint_args("tcp_receive_reset").is_none());
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            Btf::parse(b"hello world, not btf at all").err(),
            Some(BtfError::BadMagic)
        );
        assert_eq!(Btf::parse(&[0x9f]).err(), Some(BtfError::Truncated));
        let mut blob = sample();
        blob.truncate(blob.len() - 100);
        assert!(Btf::parse(&blob).is_err());
    }
}
