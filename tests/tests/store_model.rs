//! Model-based property test: the event log against a `Vec` reference, through appends,
//! range reads and reopenings.

use attune::event::{Action, Event, RawEvent};
use attune::store::{Store, StoreConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<(u8, u8, i64, bool)>),
    Read(u16, u16),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0u8..6, 0u8..10, 0i64..1_000_000, any::<bool>()), 0..12).prop_map(Op::Append),
        2 => (0u16..200, 0u16..200).prop_map(|(a, b)| Op::Read(a, b)),
        1 => Just(Op::Reopen),
    ]
}

fn to_event((u, i, ts, rating): (u8, u8, i64, bool)) -> RawEvent {
    let item = format!("i{i}");
    Event {
        user: format!("u{u}"),
        ts,
        action: if rating {
            Action::Rating {
                item,
                value: f32::from(u),
            }
        } else {
            Action::View {
                item,
                dwell_ms: Some(u32::from(i)),
            }
        },
    }
}

fn read_back(store: &Store, a: u64, b: u64) -> Vec<RawEvent> {
    store
        .events(a..b)
        .map(|e| {
            let (_, e) = e.expect("readable");
            Event {
                user: store.user_name(e.user).expect("user name"),
                ts: e.ts,
                action: e
                    .action
                    .try_map_ids(|i| store.item_name(i).ok_or(()))
                    .expect("item name"),
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn log_matches_a_vec(ops in prop::collection::vec(op(), 1..20)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path(), StoreConfig::default()).expect("open");
        let mut model: Vec<RawEvent> = Vec::new();
        for op in ops {
            match op {
                Op::Append(evs) => {
                    let evs: Vec<RawEvent> = evs.into_iter().map(to_event).collect();
                    let range = store.append(&evs).expect("append");
                    prop_assert_eq!(range, model.len() as u64..(model.len() + evs.len()) as u64);
                    model.extend(evs);
                }
                Op::Read(a, b) => {
                    let (a, b) = (u64::from(a.min(b)), u64::from(a.max(b)));
                    let lo = (a as usize).min(model.len());
                    let hi = (b as usize).min(model.len());
                    prop_assert_eq!(read_back(&store, a, b), model[lo..hi].to_vec());
                }
                Op::Reopen => {
                    store.close().expect("close");
                    drop(store);
                    store = Store::open(dir.path(), StoreConfig::default()).expect("reopen");
                }
            }
            prop_assert_eq!(store.next_seq(), model.len() as u64);
        }
        prop_assert_eq!(read_back(&store, 0, u64::MAX), model.clone());
        // The per-user index holds each user's events in log order.
        for u in 0..6u8 {
            let name = format!("u{u}");
            let expected: Vec<i64> = model.iter().filter(|e| e.user == name).map(|e| e.ts).collect();
            let got: Vec<i64> = match store.user_id(&name) {
                Some(id) => store.user_history(id).expect("history").iter().map(|e| e.ts).collect(),
                None => Vec::new(),
            };
            prop_assert_eq!(got, expected);
        }
    }
}
