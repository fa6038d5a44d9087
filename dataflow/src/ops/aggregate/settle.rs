//! Settling an aggregate's epoch: each touched group's new accumulator and output row from its
//! old accumulator and the epoch's changes.

use super::*;

impl AggregateOp {
    /// The epoch's touched groups, settled, in first-touched order. Multiset changes are
    /// written here; the accumulators are the caller's to write. Their old rows only when
    /// `want_old` (otherwise `Settled::old` is `Some(vec![])` for a group that had a row).
    pub(super) fn settle(
        &self,
        input: Option<Delta>,
        ctx: &mut EpochCtx<'_>,
        home: &AccHome<'_>,
        want_old: bool,
    ) -> Result<Touched> {
        let mut collected = match &input {
            Some(d) => match self.collect(d) {
                Ok(c) => c,
                Err(e) => {
                    let good = crate::ops::bad_rows::without_bad_rows(d, ctx, e, |d| {
                        self.collect(d).map(|_| ())
                    })?;
                    self.collect(&good)?
                }
            },
            None => self.collect_nothing(),
        };
        if ctx.initial && self.is_global() && collected.groups.is_empty() {
            collected.groups.push(GroupChange {
                key: encode(&[]),
                datums: vec![],
                count: 0,
            });
            collected.bounds.iter_mut().for_each(|b| b.push(0));
        }
        let groups = &collected.groups;
        if !ctx.preview {
            self.staged_buffer().clear();
        }
        if groups.is_empty() {
            return Ok(Touched::default());
        }
        // MIN/MAX arrivals ride in the log entry (contents_log.rs, "Staged occurrences"),
        // except in a backfill, whose one epoch would make one huge entry.
        let stage = self.occurrences
            && !ctx.backfill
            && !ctx.preview
            && matches!(home, AccHome::Contents(layout) if layout.log.is_some())
            && self.staging.load(Ordering::SeqCst)
            // Staged occurrences are written at a later fold: after their group may have closed.
            && self.closing.is_none();
        let keys: Vec<Vec<u8>> = groups
            .iter()
            .map(|g| match home {
                AccHome::Own => self.group_key(&g.key),
                AccHome::Contents(layout) => layout.key(&g.datums),
            })
            .collect();
        let decode = |b: &[u8]| {
            Ok(Arc::from(
                row_codec::decode_row(home.acc(b)?).map_err(state_err)?,
            ))
        };
        let (old_accs, found) = if ctx.preview {
            AccCache::read_uncached(ctx.snapshot, &keys, decode)?
        } else {
            self.cache.multi_get(ctx.snapshot, &keys, decode)?
        };
        // Every multiset entry this epoch touches, read in one MultiGet.
        let mut value_keys: Vec<Vec<u8>> = Vec::new();
        for (gi, g) in groups.iter().enumerate() {
            for i in 0..self.aggs.len() {
                let values = collected.values(gi, i);
                let kind = self.aggs[i].kind;
                // MIN/MAX read nothing for arrivals, and with occurrences scan per value.
                let min_max = matches!(kind, AggKind::Min | AggKind::Max);
                let blind = min_max && (self.occurrences || only_arrivals(values));
                if kind.keeps_values() && !values.is_empty() && !blind {
                    let prefix = self.multiset_prefix(i, &g.key);
                    value_keys.extend(
                        values
                            .iter()
                            .map(|(k, _, _)| [prefix.as_slice(), k.as_slice()].concat()),
                    );
                }
            }
        }
        value_keys.sort();
        value_keys.dedup();
        let stored = ctx.snapshot.multi_get(&value_keys).map_err(state_err)?;
        let prefetched: HashMap<Vec<u8>, Option<Vec<u8>>> =
            value_keys.into_iter().zip(stored).collect();
        let mut settled = Vec::with_capacity(groups.len());
        let mut created = Vec::new();
        let empty = self.empty_acc();
        for (g, old) in old_accs.into_iter().enumerate() {
            let old_acc = old.as_deref().unwrap_or(empty.as_slice());
            if let Some(c) = &self.closing {
                let change = &groups[g];
                if as_i64(&old_acc[0]) == 0 && change.count > 0 {
                    let value = change.datums.get(c.column).cloned().unwrap_or(Datum::Null);
                    created.push((change.key.clone(), value));
                }
            }
            settled.push(self.settle_group(
                &collected,
                g,
                want_old,
                old_acc,
                &prefetched,
                ctx,
                stage,
            )?);
        }
        Ok(Touched {
            keys,
            found,
            settled,
            created,
        })
    }

    /// One group's epoch: its accumulator and output row from `old_acc` and its changes.
    #[allow(clippy::too_many_arguments)]
    fn settle_group(
        &self,
        collected: &Collected,
        g: usize,
        want_old: bool,
        old_acc: &[Datum],
        prefetched: &Prefetched,
        ctx: &mut EpochCtx<'_>,
        stage: bool,
    ) -> Result<Settled> {
        let change = &collected.groups[g];
        let old_count = as_i64(&old_acc[0]);
        let new_count = old_count + change.count;
        if new_count < 0 {
            return Err(DataFusionError::Internal(
                "aggregate group count went negative".into(),
            ));
        }
        if new_count > 1 && self.aggs.iter().any(|a| a.kind == AggKind::Single) {
            return Err(DataFusionError::External(Box::new(PgError::new(
                SqlState::CARDINALITY_VIOLATION,
                "more than one row returned by a subquery used as an expression",
            ))));
        }
        let mut new_acc = old_acc.to_vec();
        new_acc[0] = Datum::Int64(new_count);
        let width = change.datums.len() + self.aggs.len();
        let mut old_out = Vec::with_capacity(if want_old { width } else { 0 });
        if want_old {
            old_out.extend_from_slice(&change.datums);
        }
        let mut new_out = Vec::with_capacity(width);
        new_out.extend_from_slice(&change.datums);
        let mut field = 1;
        for (i, spec) in self.aggs.iter().enumerate() {
            let values = collected.values(g, i);
            match spec.kind {
                AggKind::Min | AggKind::Max => {
                    let old_v = old_acc[field].clone();
                    // A MAX sharing a MIN's multiset reads it from the end.
                    let (agg, write, reverse) = match self.shares[i] {
                        Some(min) => (min, false, true),
                        None => (i, self.min_max_multisets(), false),
                    };
                    let new_v = self.update_min_max(
                        agg,
                        &change.key,
                        &old_v,
                        collected.values(g, agg),
                        prefetched,
                        ctx,
                        write,
                        reverse,
                        stage,
                    )?;
                    new_acc[field] = new_v.clone();
                    if want_old {
                        old_out.push(old_v);
                    }
                    new_out.push(new_v);
                    field += 1;
                }
                AggKind::FirstValue | AggKind::Single => {
                    let prefix = self.multiset_prefix(i, &change.key);
                    let (old_v, new_v) = self.update_extreme(&prefix, values, prefetched, ctx)?;
                    if want_old {
                        old_out.push(old_v);
                    }
                    new_out.push(new_v);
                }
                AggKind::StringAgg | AggKind::ArrayAgg => {
                    let prefix = self.multiset_prefix(i, &change.key);
                    let (old_v, new_v) = self.update_list(i, &prefix, values, prefetched, ctx)?;
                    if want_old {
                        old_out.push(old_v);
                    }
                    new_out.push(new_v);
                }
                AggKind::CountDistinct => {
                    let prefix = self.multiset_prefix(i, &change.key);
                    let old_n = as_i64(&old_acc[field]);
                    let new_n = old_n + self.update_distinct(&prefix, values, prefetched, ctx)?;
                    new_acc[field] = Datum::Int64(new_n);
                    if want_old {
                        old_out.push(Datum::Int64(old_n));
                    }
                    new_out.push(Datum::Int64(new_n));
                    field += 1;
                }
                AggKind::Count => {
                    let old_n = as_i64(&old_acc[field]);
                    let new_n = old_n + values.iter().map(|(_, _, w)| w).sum::<i64>();
                    new_acc[field] = Datum::Int64(new_n);
                    if want_old {
                        old_out.push(Datum::Int64(old_n));
                    }
                    new_out.push(Datum::Int64(new_n));
                    field += 1;
                }
                AggKind::Sum | AggKind::Avg => {
                    let (old_n, old_sum) = (as_i64(&old_acc[field]), old_acc[field + 1].clone());
                    let mut n = old_n;
                    let mut sum = old_sum.clone();
                    for (_, v, w) in values {
                        n += w;
                        sum = add_weighted(&sum, v, *w)?;
                    }
                    new_acc[field] = Datum::Int64(n);
                    new_acc[field + 1] = sum.clone();
                    if want_old {
                        old_out.push(finish_sum(spec, old_n, &old_sum)?);
                    }
                    new_out.push(finish_sum(spec, n, &sum)?);
                    field += 2;
                }
                AggKind::BoolAnd | AggKind::BoolOr => {
                    let (old_t, old_f) = (as_i64(&old_acc[field]), as_i64(&old_acc[field + 1]));
                    let (mut t, mut f) = (old_t, old_f);
                    for (_, v, w) in values {
                        match v {
                            Datum::Bool(true) => t += w,
                            _ => f += w,
                        }
                    }
                    new_acc[field] = Datum::Int64(t);
                    new_acc[field + 1] = Datum::Int64(f);
                    if want_old {
                        old_out.push(finish_bool(spec.kind, old_t, old_f));
                    }
                    new_out.push(finish_bool(spec.kind, t, f));
                    field += 2;
                }
            }
        }
        let old_exists = self.is_global() || old_count > 0;
        let new_exists = self.is_global() || new_count > 0;
        // A global aggregate's row appears at backfill: there is no "old" row before it.
        let old_exists = old_exists && !(ctx.initial && self.is_global());
        Ok(Settled {
            old: old_exists.then_some(old_out),
            new: new_exists.then_some(new_out),
            acc: new_acc,
        })
    }
}
