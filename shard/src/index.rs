//! Reverse indexes of the L1 cache: user scope → slots, operation → slots, dependency tag →
//! slots, event symbol → slots.
//!
//! All are intrusive doubly linked lists over slot numbers (users, operations) or over
//! membership records (tags, symbols; an entry may declare several), so adding or removing an
//! entry costs O(its tags) and an invalidation costs O(entries removed). Names are interned
//! while at least one entry uses them and forgotten with their last entry. Knows nothing about
//! bytes, time or eviction order: the cache calls `add` on insert and `remove` on every way an
//! entry leaves (eviction, expiry, replacement, invalidation), which keeps them consistent.

use std::collections::HashMap;

use crate::config::Operation;

/// "None" for slots, list links, names and members.
const NIL: u32 = u32::MAX;
/// List number of the per-user lists in [`SlotLinks::lists`].
const USER: usize = 0;
/// List number of the per-operation lists in [`SlotLinks::lists`].
const OP: usize = 1;

/// What kind of dependency a membership is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DepKind {
    /// A dependency tag such as `user:42:transactions`.
    Tag = 0,
    /// A market symbol named by `market_data_update` events.
    Symbol = 1,
}

/// First and count of one intrusive list.
#[derive(Debug, Clone, Copy)]
struct Head {
    first: u32,
    len: u32,
}

const EMPTY: Head = Head { first: NIL, len: 0 };

/// Interned names, each with the head of its list; ids are reused after a name's last entry
/// leaves.
#[derive(Debug, Default)]
struct Names {
    ids: HashMap<Box<str>, u32, ahash::RandomState>,
    /// Indexed by id: the name (to forget it) and its list.
    lists: Vec<(Box<str>, Head)>,
    free: Vec<u32>,
}

impl Names {
    fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let entry = (Box::<str>::from(name), EMPTY);
        let id = match self.free.pop() {
            Some(id) => {
                self.lists[id as usize] = entry;
                id
            }
            None => {
                self.lists.push(entry);
                (self.lists.len() - 1) as u32
            }
        };
        self.ids.insert(name.into(), id);
        id
    }

    /// Forgets `id` if its list is empty.
    fn release_if_empty(&mut self, id: u32) {
        let (name, head) = &mut self.lists[id as usize];
        if head.len == 0 {
            let name = std::mem::take(name);
            self.ids.remove(&name);
            self.free.push(id);
        }
    }

    fn name(&self, id: u32) -> &str {
        &self.lists[id as usize].0
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Index links of one slot.
#[derive(Debug, Clone, Copy)]
struct SlotLinks {
    /// Interned user id, `NIL` for the shared scope.
    user: u32,
    /// Operation index, for the operation list.
    op: u8,
    /// `[USER, OP]` × `[prev, next]`.
    lists: [[u32; 2]; 2],
    /// First membership of this slot, chained by [`Member::next_of_slot`].
    deps: u32,
}

const UNUSED: SlotLinks = SlotLinks {
    user: NIL,
    op: 0,
    lists: [[NIL; 2]; 2],
    deps: NIL,
};

/// One (slot, tag or symbol) membership.
#[derive(Debug, Clone, Copy)]
struct Member {
    slot: u32,
    dep: u32,
    kind: DepKind,
    prev: u32,
    next: u32,
    next_of_slot: u32,
}

/// The reverse indexes.
#[derive(Debug, Default)]
pub(crate) struct Index {
    slots: Vec<SlotLinks>,
    users: Names,
    /// `[Tag, Symbol]`.
    deps: [Names; 2],
    ops: [Head; Operation::COUNT],
    members: Vec<Member>,
    free_members: Vec<u32>,
}

impl Default for Head {
    fn default() -> Self {
        EMPTY
    }
}

impl Index {
    /// Bytes of bookkeeping per slot, for the cache's accounting.
    pub(crate) const BYTES_PER_ENTRY: usize = std::mem::size_of::<SlotLinks>();

    /// Bytes per declared tag or symbol, for the cache's accounting (membership record plus,
    /// conservatively, a full interned name entry; the name's bytes are charged separately).
    pub(crate) const BYTES_PER_DEP: usize =
        std::mem::size_of::<Member>() + 2 * std::mem::size_of::<Box<str>>() + 40;

    /// Indexes a new entry in `slot`. Repeated tags or symbols count once.
    pub(crate) fn add<S: AsRef<str>>(
        &mut self,
        slot: u32,
        op: Operation,
        user: Option<&str>,
        tags: &[S],
        symbols: &[S],
    ) {
        let i = slot as usize;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, UNUSED);
        }
        self.slots[i] = SlotLinks {
            op: op as u8,
            ..UNUSED
        };
        if let Some(user) = user {
            let id = self.users.intern(user);
            self.slots[i].user = id;
            let mut head = self.users.lists[id as usize].1;
            push(&mut self.slots, USER, &mut head, slot);
            self.users.lists[id as usize].1 = head;
        }
        let mut head = self.ops[op.index()];
        push(&mut self.slots, OP, &mut head, slot);
        self.ops[op.index()] = head;
        for t in tags {
            self.add_member(slot, DepKind::Tag, t.as_ref());
        }
        for s in symbols {
            self.add_member(slot, DepKind::Symbol, s.as_ref());
        }
    }

    /// Adds one tag or symbol to the entry in `slot` (already indexed by `add`). Returns
    /// whether it was new to the entry.
    pub(crate) fn add_member(&mut self, slot: u32, kind: DepKind, name: &str) -> bool {
        let names = &mut self.deps[kind as usize];
        let dep = names.intern(name);
        // Deduplicate within the entry.
        let mut m = self.slots[slot as usize].deps;
        while m != NIL {
            let mem = self.members[m as usize];
            if mem.kind == kind && mem.dep == dep {
                return false;
            }
            m = mem.next_of_slot;
        }
        let head = &mut names.lists[dep as usize].1;
        let member = Member {
            slot,
            dep,
            kind,
            prev: NIL,
            next: head.first,
            next_of_slot: self.slots[slot as usize].deps,
        };
        let id = match self.free_members.pop() {
            Some(id) => {
                self.members[id as usize] = member;
                id
            }
            None => {
                self.members.push(member);
                (self.members.len() - 1) as u32
            }
        };
        if head.first != NIL {
            self.members[head.first as usize].prev = id;
        }
        head.first = id;
        head.len += 1;
        self.slots[slot as usize].deps = id;
        true
    }

    /// Removes `slot` from every index. Must be called exactly once per `add`.
    pub(crate) fn remove(&mut self, slot: u32) {
        let Some(links) = self.slots.get(slot as usize).copied() else {
            return;
        };
        if links.user != NIL {
            let id = links.user as usize;
            let mut head = self.users.lists[id].1;
            unlink(&mut self.slots, USER, &mut head, slot);
            self.users.lists[id].1 = head;
            self.users.release_if_empty(links.user);
        }
        let mut head = self.ops[usize::from(links.op)];
        unlink(&mut self.slots, OP, &mut head, slot);
        self.ops[usize::from(links.op)] = head;
        let mut m = links.deps;
        while m != NIL {
            let mem = self.members[m as usize];
            let names = &mut self.deps[mem.kind as usize];
            let head = &mut names.lists[mem.dep as usize].1;
            if mem.prev != NIL {
                self.members[mem.prev as usize].next = mem.next;
            } else {
                head.first = mem.next;
            }
            if mem.next != NIL {
                self.members[mem.next as usize].prev = mem.prev;
            }
            head.len -= 1;
            names.release_if_empty(mem.dep);
            self.free_members.push(m);
            m = mem.next_of_slot;
        }
        self.slots[slot as usize] = UNUSED;
    }

    /// Slots whose entries declared `name` as a tag (`Tag`) or symbol (`Symbol`).
    pub(crate) fn slots_with(&self, kind: DepKind, name: &str, out: &mut Vec<u32>) {
        let names = &self.deps[kind as usize];
        let Some(id) = names.id(name) else { return };
        let mut m = names.lists[id as usize].1.first;
        while m != NIL {
            let mem = &self.members[m as usize];
            out.push(mem.slot);
            m = mem.next;
        }
    }

    /// Slots of `user`'s entries.
    pub(crate) fn slots_of_user(&self, user: &str, out: &mut Vec<u32>) {
        if let Some(id) = self.users.id(user) {
            walk(&self.slots, USER, self.users.lists[id as usize].1, out);
        }
    }

    /// Slots of `op`'s entries.
    pub(crate) fn slots_of_op(&self, op: Operation, out: &mut Vec<u32>) {
        walk(&self.slots, OP, self.ops[op.index()], out);
    }

    /// Names of the tags (`Tag`) or symbols (`Symbol`) declared by the entry in `slot`.
    pub(crate) fn deps_of(&self, slot: u32, kind: DepKind) -> Vec<String> {
        let mut out = Vec::new();
        let mut m = self.slots.get(slot as usize).map_or(NIL, |l| l.deps);
        while m != NIL {
            let mem = &self.members[m as usize];
            if mem.kind == kind {
                out.push(self.deps[kind as usize].name(mem.dep).to_owned());
            }
            m = mem.next_of_slot;
        }
        out.reverse();
        out
    }

    /// Number of interned users, tags and symbols (for stats and tests).
    pub(crate) fn name_counts(&self) -> (usize, usize, usize) {
        (self.users.len(), self.deps[0].len(), self.deps[1].len())
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        *self = Index::default();
    }

    /// Every slot any index points at, with repeats (for consistency checks in tests).
    #[cfg(test)]
    pub(crate) fn all_indexed_slots(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for (_, head) in &self.users.lists {
            walk(&self.slots, USER, *head, &mut out);
        }
        for head in self.ops {
            walk(&self.slots, OP, head, &mut out);
        }
        for names in &self.deps {
            for (name, _) in &names.lists {
                if !name.is_empty() {
                    self.slots_with_name(names, name, &mut out);
                }
            }
        }
        out
    }

    #[cfg(test)]
    fn slots_with_name(&self, names: &Names, name: &str, out: &mut Vec<u32>) {
        if let Some(id) = names.id(name) {
            let mut m = names.lists[id as usize].1.first;
            while m != NIL {
                out.push(self.members[m as usize].slot);
                m = self.members[m as usize].next;
            }
        }
    }
}

fn push(slots: &mut [SlotLinks], list: usize, head: &mut Head, slot: u32) {
    slots[slot as usize].lists[list] = [NIL, head.first];
    if head.first != NIL {
        slots[head.first as usize].lists[list][0] = slot;
    }
    head.first = slot;
    head.len += 1;
}

fn unlink(slots: &mut [SlotLinks], list: usize, head: &mut Head, slot: u32) {
    let [prev, next] = slots[slot as usize].lists[list];
    if prev != NIL {
        slots[prev as usize].lists[list][1] = next;
    } else {
        head.first = next;
    }
    if next != NIL {
        slots[next as usize].lists[list][0] = prev;
    }
    head.len -= 1;
    slots[slot as usize].lists[list] = [NIL, NIL];
}

fn walk(slots: &[SlotLinks], list: usize, head: Head, out: &mut Vec<u32>) {
    let mut s = head.first;
    while s != NIL {
        out.push(s);
        s = slots[s as usize].lists[list][1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<u32>) -> Vec<u32> {
        v.sort_unstable();
        v
    }

    #[test]
    fn add_remove_keeps_lists_and_names_consistent() {
        let mut ix = Index::default();
        let none: &[&str] = &[];
        ix.add(
            0,
            Operation::BudgetOptimization,
            Some("u1"),
            &["a", "b", "a"],
            none,
        );
        ix.add(
            1,
            Operation::BudgetOptimization,
            Some("u2"),
            &["a"],
            &["AAPL"],
        );
        ix.add(
            2,
            Operation::PortfolioAnalysis,
            None,
            none,
            &["AAPL", "MSFT"],
        );
        let mut out = Vec::new();
        ix.slots_with(DepKind::Tag, "a", &mut out);
        assert_eq!(sorted(std::mem::take(&mut out)), vec![0, 1]);
        ix.slots_with(DepKind::Symbol, "AAPL", &mut out);
        assert_eq!(sorted(std::mem::take(&mut out)), vec![1, 2]);
        ix.slots_of_op(Operation::BudgetOptimization, &mut out);
        assert_eq!(sorted(std::mem::take(&mut out)), vec![0, 1]);
        ix.slots_of_user("u2", &mut out);
        assert_eq!(std::mem::take(&mut out), vec![1]);
        assert_eq!(ix.deps_of(0, DepKind::Tag), vec!["a", "b"]);
        assert_eq!(ix.name_counts(), (2, 2, 2));

        ix.remove(1);
        ix.slots_with(DepKind::Symbol, "AAPL", &mut out);
        assert_eq!(std::mem::take(&mut out), vec![2]);
        ix.slots_of_user("u2", &mut out);
        assert!(out.is_empty());
        assert_eq!(ix.name_counts(), (1, 2, 2));
        ix.remove(0);
        ix.remove(2);
        assert_eq!(ix.name_counts(), (0, 0, 0));
        assert!(ix.all_indexed_slots().is_empty());
        // Slots and ids are reused cleanly.
        ix.add(2, Operation::RiskAssessment, Some("u3"), &["c"], none);
        assert_eq!(sorted(ix.all_indexed_slots()), vec![2, 2, 2]);
    }
}
