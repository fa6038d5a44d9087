//! Which parts of a relation's columns a reader needs, down to fields of struct columns — so
//! a source can decode only those.

use std::collections::BTreeMap;

/// Per column (index in the relation's schema): what of it is read. Columns not present are
/// not read at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection(BTreeMap<usize, Selected>);

/// What of one value is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selected {
    /// The whole value.
    All,
    /// Only these fields of a struct (each again whole or in part).
    Fields(BTreeMap<String, Selected>),
}

impl Selected {
    fn merge(&mut self, other: Selected) {
        match (self, other) {
            (Selected::All, _) => {}
            (this @ Selected::Fields(_), Selected::All) => *this = Selected::All,
            (Selected::Fields(a), Selected::Fields(b)) => {
                for (name, f) in b {
                    match a.get_mut(&name) {
                        Some(mine) => mine.merge(f),
                        None => {
                            a.insert(name, f);
                        }
                    }
                }
            }
        }
    }

    fn path(path: &[String]) -> Selected {
        match path.split_first() {
            None => Selected::All,
            Some((first, rest)) => {
                Selected::Fields(BTreeMap::from([(first.clone(), Selected::path(rest))]))
            }
        }
    }
}

impl Selection {
    /// Whole columns.
    pub fn columns_whole(columns: &[usize]) -> Self {
        Selection(columns.iter().map(|&c| (c, Selected::All)).collect())
    }

    /// Reads all of `column`.
    pub fn add_column(&mut self, column: usize) {
        self.add_path(column, &[]);
    }

    /// Reads `column`'s field at `path` (empty: the whole column).
    pub fn add_path(&mut self, column: usize, path: &[String]) {
        let f = Selected::path(path);
        match self.0.get_mut(&column) {
            Some(mine) => mine.merge(f),
            None => {
                self.0.insert(column, f);
            }
        }
    }

    /// Adds everything `other` reads.
    pub fn merge(&mut self, other: Selection) {
        for (c, f) in other.0 {
            match self.0.get_mut(&c) {
                Some(mine) => mine.merge(f),
                None => {
                    self.0.insert(c, f);
                }
            }
        }
    }

    /// The columns read (wholly or in part), ascending.
    pub fn columns(&self) -> Vec<usize> {
        self.0.keys().copied().collect()
    }

    /// What of `column` is read; `None` when nothing.
    pub fn get(&self, column: usize) -> Option<&Selected> {
        self.0.get(&column)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn paths_merge_and_whole_wins() {
        let mut s = Selection::default();
        s.add_path(1, &p(&["user", "name"]));
        s.add_path(1, &p(&["user", "id"]));
        s.add_path(1, &p(&["lang"]));
        let Some(Selected::Fields(top)) = s.get(1) else {
            panic!("partial")
        };
        assert_eq!(top.len(), 2);
        let Some(Selected::Fields(user)) = top.get("user") else {
            panic!("user partial")
        };
        assert_eq!(user.len(), 2);
        s.add_path(1, &p(&["user"]));
        let Some(Selected::Fields(top)) = s.get(1) else {
            panic!("partial")
        };
        assert_eq!(top.get("user"), Some(&Selected::All));
        s.add_column(1);
        assert_eq!(s.get(1), Some(&Selected::All));
        assert_eq!(s.columns(), vec![1]);
    }
}
