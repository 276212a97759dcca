//! Questions asked of BTF by name: functions, struct members (through
//! anonymous members and along `a.b.c` paths), sizes, enums, and the
//! argument types of BTF tracepoints.

use super::{Btf, Kind, Location};

impl<'a> Btf<'a> {
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
    pub(crate) fn has_func(&self, name: &str) -> bool {
        self.find(name, &[Kind::Func]).is_some()
    }

    /// Argument types of kernel function `name` (see [`Btf::describe`]),
    /// or None when BTF does not name it (inlined, or not built in).
    pub(crate) fn func_args(&self, name: &str) -> Option<Vec<String>> {
        let func = self.get(self.find(name, &[Kind::Func])?)?;
        let proto = self
            .get(func.size_or_type)
            .filter(|t| t.kind == Kind::FuncProto)?;
        Some(proto.params().map(|(_, ty)| self.describe(ty)).collect())
    }

    pub(crate) fn struct_id(&self, name: &str) -> Option<u32> {
        self.find(name, &[Kind::Struct])
    }

    /// Skips typedefs and qualifiers.
    pub(crate) fn resolve(&self, mut id: u32) -> u32 {
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
    pub(crate) fn size_of(&self, id: u32) -> Option<u32> {
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
    pub(crate) fn member_path(&self, struct_name: &str, path: &str) -> Option<Location> {
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
    pub(crate) fn enum_values(&self, name: &str) -> Option<Vec<(&'a str, i64)>> {
        let id = self.find(name, &[Kind::Enum, Kind::Enum64])?;
        Some(self.get(id)?.enumerators().collect())
    }

    /// Enumerators of the (possibly anonymous) enum that defines `name`.
    pub(crate) fn enum_containing(&self, name: &str) -> Option<Vec<(&'a str, i64)>> {
        self.all()
            .map(|(_, t)| t)
            .find(|t| t.enumerators().any(|(n, _)| n == name))
            .map(|t| t.enumerators().collect())
    }

    /// A short description of a type for signature checks: `*sock` for a
    /// pointer to struct sock, `enum sk_rst_reason`, `int`.
    pub(crate) fn describe(&self, id: u32) -> String {
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
    pub(crate) fn tracepoint_args(&self, name: &str) -> Option<Vec<String>> {
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
