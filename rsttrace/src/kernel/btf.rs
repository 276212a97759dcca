//! A small reader for the kernel's BTF (`/sys/kernel/btf/vmlinux`): enough to
//! find struct member offsets by name (through anonymous unions and nested
//! members), enum values by name, and the argument names of BTF tracepoints.
//!
//! Format: include/uapi/linux/btf.h and Documentation/bpf/btf.rst.

use std::collections::HashMap;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub type_id: u32,
    /// Offset from the start of the containing struct, in bits.
    pub bit_offset: u32,
    /// Width in bits for a bitfield, 0 otherwise.
    pub bitfield_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type {
    pub kind: Kind,
    pub name: String,
    /// `size` for Int/Struct/Union/Enum/Float/DataSec, referenced type id
    /// otherwise.
    pub size_or_type: u32,
    pub members: Vec<Member>,
    /// Enumerators of Enum/Enum64.
    pub enumerators: Vec<(String, i64)>,
    /// Parameters of a FuncProto: (name, type id).
    pub params: Vec<(String, u32)>,
    /// Array: (element type, number of elements).
    pub array: Option<(u32, u32)>,
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

pub struct Btf {
    /// Index 0 is `void`.
    types: Vec<Type>,
    by_name: HashMap<(String, KindKey), Vec<u32>>,
}

/// Kinds that share a namespace for name lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KindKey {
    Struct,
    Union,
    Enum,
    Typedef,
    Other,
}

fn kind_key(kind: Kind) -> KindKey {
    match kind {
        Kind::Struct => KindKey::Struct,
        Kind::Union => KindKey::Union,
        Kind::Enum | Kind::Enum64 => KindKey::Enum,
        Kind::Typedef => KindKey::Typedef,
        _ => KindKey::Other,
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32, BtfError> {
        let bytes = self
            .data
            .get(self.pos..self.pos + 4)
            .ok_or(BtfError::Truncated)?;
        self.pos += 4;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }
}

fn le_u32(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .ok_or(BtfError::Truncated)
}

impl Btf {
    pub fn from_sys_fs() -> std::io::Result<Result<Self, BtfError>> {
        let data = std::fs::read("/sys/kernel/btf/vmlinux")?;
        Ok(Self::parse(&data))
    }

    /// Parses little-endian BTF (the only byte order of the hosts we run on
    /// is checked by the magic).
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
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
        let types_data = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Truncated)?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Truncated)?;
        let name = |off: u32| -> String {
            let start = off as usize;
            if start >= strings.len() {
                return String::new();
            }
            let end = strings[start..]
                .iter()
                .position(|&b| b == 0)
                .map_or(strings.len(), |p| start + p);
            String::from_utf8_lossy(&strings[start..end]).into_owned()
        };

        let mut types = vec![Type {
            kind: Kind::Int,
            name: "void".into(),
            size_or_type: 0,
            members: vec![],
            enumerators: vec![],
            params: vec![],
            array: None,
        }];
        let mut r = Reader {
            data: types_data,
            pos: 0,
        };
        while r.pos < types_data.len() {
            let name_off = r.u32()?;
            let info = r.u32()?;
            let size_or_type = r.u32()?;
            let vlen = info & 0xffff;
            let kind = Kind::from_raw((info >> 24) & 0x1f)?;
            let kind_flag = info >> 31 == 1;
            let mut t = Type {
                kind,
                name: name(name_off),
                size_or_type,
                members: vec![],
                enumerators: vec![],
                params: vec![],
                array: None,
            };
            match kind {
                Kind::Int | Kind::Var | Kind::DeclTag => {
                    r.u32()?;
                }
                Kind::Array => {
                    let elem = r.u32()?;
                    let _index = r.u32()?;
                    let n = r.u32()?;
                    t.array = Some((elem, n));
                }
                Kind::Struct | Kind::Union => {
                    for _ in 0..vlen {
                        let m_name = r.u32()?;
                        let m_type = r.u32()?;
                        let m_off = r.u32()?;
                        let (bit_offset, bitfield_size) = if kind_flag {
                            (m_off & 0x00ff_ffff, m_off >> 24)
                        } else {
                            (m_off, 0)
                        };
                        t.members.push(Member {
                            name: name(m_name),
                            type_id: m_type,
                            bit_offset,
                            bitfield_size,
                        });
                    }
                }
                Kind::Enum => {
                    for _ in 0..vlen {
                        let e_name = r.u32()?;
                        let val = r.u32()?;
                        let val = if kind_flag {
                            i64::from(val as i32)
                        } else {
                            i64::from(val)
                        };
                        t.enumerators.push((name(e_name), val));
                    }
                }
                Kind::Enum64 => {
                    for _ in 0..vlen {
                        let e_name = r.u32()?;
                        let lo = r.u32()?;
                        let hi = r.u32()?;
                        t.enumerators
                            .push((name(e_name), ((u64::from(hi) << 32) | u64::from(lo)) as i64));
                    }
                }
                Kind::FuncProto => {
                    for _ in 0..vlen {
                        let p_name = r.u32()?;
                        let p_type = r.u32()?;
                        t.params.push((name(p_name), p_type));
                    }
                }
                Kind::DataSec => {
                    for _ in 0..vlen {
                        r.u32()?;
                        r.u32()?;
                        r.u32()?;
                    }
                }
                Kind::Ptr
                | Kind::Fwd
                | Kind::Typedef
                | Kind::Volatile
                | Kind::Const
                | Kind::Restrict
                | Kind::Func
                | Kind::Float
                | Kind::TypeTag => {}
            }
            types.push(t);
        }

        let mut by_name: HashMap<(String, KindKey), Vec<u32>> = HashMap::new();
        for (id, t) in types.iter().enumerate().skip(1) {
            if !t.name.is_empty() {
                by_name
                    .entry((t.name.clone(), kind_key(t.kind)))
                    .or_default()
                    .push(id as u32);
            }
        }
        Ok(Btf { types, by_name })
    }

    pub fn get(&self, id: u32) -> Option<&Type> {
        self.types.get(id as usize)
    }

    fn find(&self, name: &str, key: KindKey) -> Option<u32> {
        let ids = self.by_name.get(&(name.to_string(), key))?;
        // Prefer a complete definition (a forward declaration has no members).
        ids.iter()
            .copied()
            .find(|&id| self.types[id as usize].size_or_type != 0)
            .or_else(|| ids.first().copied())
    }

    pub fn struct_id(&self, name: &str) -> Option<u32> {
        self.find(name, KindKey::Struct)
    }

    /// Skips typedefs and qualifiers.
    pub fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.get(id).map(|t| t.kind) {
                Some(
                    Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag,
                ) => id = self.types[id as usize].size_or_type,
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
                let (elem, n) = t.array?;
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
        for m in &t.members {
            if m.name == name {
                return Some(Location {
                    bit_offset: m.bit_offset,
                    bitfield_size: m.bitfield_size,
                    type_id: m.type_id,
                });
            }
        }
        for m in t.members.iter().filter(|m| m.name.is_empty()) {
            if let Some(inner) = self.member(m.type_id, name) {
                return Some(Location {
                    bit_offset: m.bit_offset + inner.bit_offset,
                    ..inner
                });
            }
        }
        None
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
    pub fn enum_values(&self, name: &str) -> Option<&[(String, i64)]> {
        let id = self.find(name, KindKey::Enum)?;
        Some(&self.types[id as usize].enumerators)
    }

    /// Value of an enumerator, searching every enum (for anonymous enums
    /// such as the TCP states).
    pub fn enumerator(&self, name: &str) -> Option<i64> {
        self.types
            .iter()
            .filter(|t| matches!(t.kind, Kind::Enum | Kind::Enum64))
            .flat_map(|t| t.enumerators.iter())
            .find(|(n, _)| n == name)
            .map(|&(_, v)| v)
    }

    /// Enumerators of the (possibly anonymous) enum that defines `name`.
    pub fn enum_containing(&self, name: &str) -> Option<&[(String, i64)]> {
        self.types
            .iter()
            .filter(|t| matches!(t.kind, Kind::Enum | Kind::Enum64))
            .find(|t| t.enumerators.iter().any(|(n, _)| n == name))
            .map(|t| t.enumerators.as_slice())
    }

    /// A short description of a type for signature checks: `*sock` for a
    /// pointer to struct sock, `enum sk_rst_reason`, `int`.
    pub fn describe(&self, id: u32) -> String {
        let id = self.resolve(id);
        let Some(t) = self.get(id) else {
            return "?".into();
        };
        match t.kind {
            Kind::Ptr => format!("*{}", self.describe(t.size_or_type)),
            Kind::Enum | Kind::Enum64 => format!("enum {}", t.name),
            _ if id == 0 => "void".into(),
            _ => t.name.clone(),
        }
    }

    /// Argument types of BTF tracepoint `name` (see [`Btf::describe`]),
    /// from the typedef `btf_trace_<name>`: a pointer to a function whose
    /// first parameter is the tracepoint's private data, not an argument.
    pub fn tracepoint_args(&self, name: &str) -> Option<Vec<String>> {
        let typedef = self.find(&format!("btf_trace_{name}"), KindKey::Typedef)?;
        let ptr = self.resolve(typedef);
        let proto = self.get(ptr).filter(|t| t.kind == Kind::Ptr)?.size_or_type;
        let proto = self.get(proto).filter(|t| t.kind == Kind::FuncProto)?;
        Some(
            proto
                .params
                .iter()
                .skip(1)
                .map(|&(_, ty)| self.describe(ty))
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
        let btf = Btf::parse(&sample()).unwrap();
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
        let btf = Btf::parse(&sample()).unwrap();
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
        let btf = Btf::parse(&sample()).unwrap();
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
        let btf = Btf::parse(&sample()).unwrap();
        let comm = btf.member_path("task_struct", "comm").unwrap();
        assert_eq!(comm.byte_offset(), Some(8));
        assert_eq!(btf.size_of(comm.type_id), Some(16));
    }

    #[test]
    fn enums_by_name_and_anonymous() {
        let btf = Btf::parse(&sample()).unwrap();
        let reasons = btf.enum_values("sk_rst_reason").unwrap();
        assert_eq!(reasons[1], ("SK_RST_REASON_NO_SOCKET".to_string(), 1));
        assert_eq!(btf.enumerator("TCP_LISTEN"), Some(10));
        assert_eq!(btf.enumerator("TCP_NOPE"), None);
    }

    #[test]
    fn tracepoint_args_skip_private_data() {
        let btf = Btf::parse(&sample()).unwrap();
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
