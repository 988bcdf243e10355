//! Replica placement as Kafka's `StripedReplicaPlacer`: racks are visited round robin from a
//! random start, and inside each rack the brokers (sorted, then a random offset) round robin;
//! the first replica (the leader) always goes to an unfenced broker and moves on by one rack
//! per partition, so leaders spread; once as many partitions as unfenced brokers were placed,
//! racks and brokers are shuffled so later stripes differ. Brokers without a rack form one
//! rack. Fenced brokers may hold followers, not leaders; brokers in controlled shutdown are
//! not used. Randomness comes from the controller's seeded generator.

use sluice_quorum::Rng;
use std::collections::BTreeMap;

/// A broker placement may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UsableBroker {
    pub id: i32,
    pub rack: Option<String>,
    pub fenced: bool,
}

/// Why a placement is impossible; the text is Kafka's `InvalidReplicationFactorException`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PlacementError(pub String);

#[derive(Debug, Default)]
struct BrokerList {
    brokers: Vec<i32>,
    index: usize,
    offset: usize,
    epoch: usize,
}

impl BrokerList {
    fn initialize(&mut self, rng: &mut Rng) {
        if !self.brokers.is_empty() {
            self.brokers.sort_unstable();
            self.offset = below(rng, self.brokers.len());
        }
    }

    fn next(&mut self, epoch: usize) -> Option<i32> {
        if self.brokers.is_empty() {
            return None;
        }
        if self.epoch != epoch {
            self.epoch = epoch;
            self.index = 0;
            self.offset = (self.offset + 1) % self.brokers.len();
        }
        if self.index >= self.brokers.len() {
            return None;
        }
        let broker = self.brokers[(self.index + self.offset) % self.brokers.len()];
        self.index += 1;
        Some(broker)
    }
}

#[derive(Debug, Default)]
struct Rack {
    fenced: BrokerList,
    unfenced: BrokerList,
}

/// Kafka's `RackList`: the state of one topic's placement.
#[derive(Debug)]
struct RackList<'a> {
    rng: &'a mut Rng,
    racks: BTreeMap<Option<String>, Rack>,
    names: Vec<Option<String>>,
    total: usize,
    unfenced: usize,
    epoch: usize,
    offset: usize,
}

impl<'a> RackList<'a> {
    fn new(rng: &'a mut Rng, brokers: &[UsableBroker]) -> RackList<'a> {
        let mut racks: BTreeMap<Option<String>, Rack> = BTreeMap::new();
        for b in brokers {
            let rack = racks.entry(b.rack.clone()).or_default();
            let list = if b.fenced {
                &mut rack.fenced
            } else {
                &mut rack.unfenced
            };
            list.brokers.push(b.id);
        }
        for rack in racks.values_mut() {
            rack.fenced.initialize(rng);
            rack.unfenced.initialize(rng);
        }
        // BTreeMap order puts None first, then names: Kafka's OptionalStringComparator.
        let names: Vec<Option<String>> = racks.keys().cloned().collect();
        let offset = if names.is_empty() {
            0
        } else {
            below(rng, names.len())
        };
        RackList {
            total: brokers.len(),
            unfenced: brokers.iter().filter(|b| !b.fenced).count(),
            rng,
            racks,
            names,
            epoch: 0,
            offset,
        }
    }

    fn shuffle(&mut self) {
        shuffle(self.rng, &mut self.names);
        for rack in self.racks.values_mut() {
            shuffle(self.rng, &mut rack.fenced.brokers);
            shuffle(self.rng, &mut rack.unfenced.brokers);
        }
    }

    fn rack(&mut self, index: usize) -> &mut Rack {
        let name = &self.names[index];
        self.racks.entry(name.clone()).or_default()
    }

    fn place(&mut self, replication_factor: usize) -> Vec<i32> {
        if self.epoch == self.unfenced && self.unfenced > 1 {
            self.shuffle();
            self.epoch = 0;
        }
        if self.offset == self.names.len() {
            self.offset = 0;
        }
        let epoch = self.epoch;
        let mut replicas = Vec::with_capacity(replication_factor);
        let mut first = self.offset;
        let leader = loop {
            if let Some(b) = self.rack(first).unfenced.next(epoch) {
                break b;
            }
            first = (first + 1) % self.names.len();
        };
        replicas.push(leader);
        let mut first = Some(first);
        let mut index = self.offset;
        for _ in 1..replication_factor {
            let replica = loop {
                let mut found = None;
                if first == Some(index) {
                    first = None;
                } else {
                    let rack = self.rack(index);
                    found = rack
                        .unfenced
                        .next(epoch)
                        .or_else(|| rack.fenced.next(epoch));
                }
                index = (index + 1) % self.names.len();
                if let Some(b) = found {
                    break b;
                }
            };
            replicas.push(replica);
        }
        self.epoch += 1;
        self.offset += 1;
        replicas
    }
}

/// Places `partitions` partitions of `replication_factor` replicas over `brokers`.
pub(super) fn place(
    rng: &mut Rng,
    brokers: &[UsableBroker],
    partitions: usize,
    replication_factor: i32,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    let mut racks = RackList::new(rng, brokers);
    if replication_factor <= 0 {
        return Err(PlacementError(format!(
            "Invalid replication factor {replication_factor}: the replication factor must be \
             positive."
        )));
    }
    if racks.unfenced == 0 {
        return Err(PlacementError(
            "All brokers are currently fenced.".to_owned(),
        ));
    }
    let rf = usize::try_from(replication_factor).unwrap_or(usize::MAX);
    if rf > racks.total {
        return Err(PlacementError(format!(
            "The target replication factor of {replication_factor} cannot be reached because \
             only {} broker(s) are registered.",
            racks.total
        )));
    }
    Ok((0..partitions).map(|_| racks.place(rf)).collect())
}

fn below(rng: &mut Rng, bound: usize) -> usize {
    usize::try_from(rng.below(bound as u64)).unwrap_or(0)
}

/// Fisher-Yates, as `Collections.shuffle`.
fn shuffle<T>(rng: &mut Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i + 1);
        items.swap(i, j);
    }
}
