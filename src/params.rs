//! One flat parameter buffer with named views.
//!
//! Gradients and optimizer state are plain `Vec`s of the same length, so a single
//! [`ParamLayout`] describes them all and an optimizer update is one loop over flat slices.

use std::ops::Range;

/// One named tensor inside the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamEntry {
    /// PyTorch state-dict name, e.g. `rnn.weight_hh_l0`.
    pub name: String,
    /// Row-major shape, e.g. `[4 * H, H]`.
    pub shape: Vec<usize>,
    pub offset: usize,
}

impl ParamEntry {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Names, shapes and offsets of every parameter tensor, in storage order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamLayout {
    entries: Vec<ParamEntry>,
    total: usize,
}

impl ParamLayout {
    /// Appends a tensor and returns its range in the flat buffer.
    pub fn push(&mut self, name: impl Into<String>, shape: &[usize]) -> Range<usize> {
        let entry = ParamEntry {
            name: name.into(),
            shape: shape.to_vec(),
            offset: self.total,
        };
        self.total += entry.len();
        let range = entry.range();
        self.entries.push(entry);
        range
    }

    /// Total number of scalars.
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn entries(&self) -> &[ParamEntry] {
        &self.entries
    }

    pub fn get(&self, name: &str) -> Option<&ParamEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The named view of `data` (which must have this layout's length).
    pub fn view<'a, T>(&self, data: &'a [T], name: &str) -> Option<&'a [T]> {
        self.get(name).map(|e| &data[e.range()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_contiguous_and_named() {
        let mut l = ParamLayout::default();
        assert_eq!(l.push("a", &[2, 3]), 0..6);
        assert_eq!(l.push("b", &[4]), 6..10);
        assert_eq!(l.total(), 10);
        let data: Vec<i32> = (0..10).collect();
        assert_eq!(l.view(&data, "b"), Some(&[6, 7, 8, 9][..]));
        assert!(l.view(&data, "c").is_none());
    }
}
