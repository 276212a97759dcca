//! Label values with a ceiling: the first `max` distinct values keep
//! their own series, later ones share `other`.  Process names and
//! container ids are open-ended; a metric must not be.

use std::collections::HashMap;

/// The label's value when unknown (no owner, no container): Prometheus
/// treats an empty value as an absent label.
pub(crate) const UNKNOWN: u16 = 0;
/// Where values past the ceiling go.
pub(crate) const OTHER: u16 = 1;

pub(crate) struct BoundedLabel {
    ids: HashMap<Box<str>, u16>,
    values: Vec<Box<str>>,
    max: usize,
}

impl BoundedLabel {
    pub(crate) fn new(max: usize) -> Self {
        BoundedLabel {
            ids: HashMap::new(),
            values: vec!["".into(), "other".into()],
            max,
        }
    }

    /// The id of `value` (allocates only the first time a value is seen).
    pub(crate) fn id(&mut self, value: &str) -> u16 {
        if value.is_empty() {
            return UNKNOWN;
        }
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        if self.ids.len() >= self.max {
            return OTHER;
        }
        let id = self.values.len() as u16;
        self.values.push(value.into());
        self.ids.insert(value.into(), id);
        id
    }

    pub(crate) fn value(&self, id: u16) -> &str {
        &self.values[usize::from(id)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_the_ceiling_are_other() {
        let mut l = BoundedLabel::new(2);
        let a = l.id("nginx");
        assert_eq!(l.id("curl"), a + 1);
        assert_eq!(l.id("redis"), OTHER);
        assert_eq!(l.id("nginx"), a);
        assert_eq!(l.id(""), UNKNOWN);
        assert_eq!(l.value(OTHER), "other");
        assert_eq!(l.value(a), "nginx");
    }
}
