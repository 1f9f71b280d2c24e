//! Walking several sorted sources as one: the newest layer of the state
//! first, then older ones, then the checkpoint. For equal keys the earlier
//! source wins and the others' entries are skipped.

use super::StoreError;

type Source<'a, V> = Box<dyn Iterator<Item = Result<(Vec<u8>, V), StoreError>> + 'a>;

/// Sources merged in key order, earlier sources shadowing later ones.
pub struct Merged<'a, V> {
    sources: Vec<std::iter::Peekable<Source<'a, V>>>,
}

impl<'a, V> Merged<'a, V> {
    /// Merge `sources`, each ascending by key, the first with the highest
    /// priority.
    pub fn new(sources: Vec<Source<'a, V>>) -> Merged<'a, V> {
        Merged {
            sources: sources.into_iter().map(Iterator::peekable).collect(),
        }
    }
}

impl<V> Iterator for Merged<'_, V> {
    type Item = Result<(Vec<u8>, V), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        // The smallest key at the head of any source; the first source with
        // it wins. An error at a head is answered at once.
        let mut winner: Option<(usize, Vec<u8>)> = None;
        for index in 0..self.sources.len() {
            match self.sources[index].peek() {
                None => {}
                Some(Err(_)) => return self.sources[index].next(),
                Some(Ok((key, _))) if winner.as_ref().is_none_or(|(_, best)| key < best) => {
                    winner = Some((index, key.clone()));
                }
                Some(Ok(_)) => {}
            }
        }
        let (winner, key) = winner?;
        let item = self.sources[winner].next()?;
        for (index, source) in self.sources.iter_mut().enumerate() {
            if index != winner && matches!(source.peek(), Some(Ok((k, _))) if *k == key) {
                source.next();
            }
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(entries: &[(u8, &'static str)]) -> Source<'static, &'static str> {
        let entries: Vec<_> = entries.iter().map(|(k, v)| Ok((vec![*k], *v))).collect();
        Box::new(entries.into_iter())
    }

    #[test]
    fn earlier_sources_shadow_later_ones_and_order_holds() {
        let merged: Vec<(Vec<u8>, &str)> = Merged::new(vec![
            source(&[(2, "new"), (5, "new")]),
            source(&[(1, "old"), (2, "old"), (3, "old")]),
            source(&[(3, "base"), (4, "base"), (5, "base")]),
        ])
        .map(Result::unwrap)
        .collect();
        assert_eq!(
            merged,
            vec![
                (vec![1], "old"),
                (vec![2], "new"),
                (vec![3], "old"),
                (vec![4], "base"),
                (vec![5], "new"),
            ]
        );
    }
}
