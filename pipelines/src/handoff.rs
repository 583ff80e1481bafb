//! Hand-off between workers: packets whose state another worker owns (a NAT session, a dedupe stream) go
//! to that worker through a ring of its own. There is one ring per ordered pair of workers, so each ring
//! has exactly one producer and one consumer; the rings are crossbeam's bounded lock-free queues (no
//! mutex). A full ring refuses the packet, which the sender drops and counts.
use crossbeam_queue::ArrayQueue;

pub struct Handoff<T> {
    workers: usize,
    /// Ring from worker `f` to worker `t` at `f * workers + t` (the diagonal is unused).
    rings: Vec<ArrayQueue<T>>,
}

impl<T> Handoff<T> {
    /// Rings of `capacity` items between every ordered pair of `workers` workers.
    pub fn new(workers: usize, capacity: usize) -> Handoff<T> {
        let workers = workers.max(1);
        Handoff {
            workers,
            rings: (0..workers * workers)
                .map(|_| ArrayQueue::new(capacity.max(1)))
                .collect(),
        }
    }

    /// Worker `from` sends `item` to worker `to`; gives it back when the ring is full or `to` is not a
    /// worker.
    #[inline]
    pub fn send(&self, from: usize, to: usize, item: T) -> Result<(), T> {
        if from >= self.workers || to >= self.workers || from == to {
            return Err(item);
        }
        self.rings[from * self.workers + to].push(item)
    }

    /// Worker `to` takes up to `max` items from all its incoming rings, calling `f` with each; returns how
    /// many it took.
    #[inline]
    pub fn recv(&self, to: usize, max: usize, mut f: impl FnMut(T)) -> usize {
        let mut n = 0;
        if to >= self.workers {
            return 0;
        }
        for from in 0..self.workers {
            if from == to {
                continue;
            }
            let ring = &self.rings[from * self.workers + to];
            while n < max {
                let Some(item) = ring.pop() else { break };
                f(item);
                n += 1;
            }
        }
        n
    }

    /// Items waiting for worker `to`.
    pub fn pending(&self, to: usize) -> usize {
        (0..self.workers)
            .filter(|f| *f != to)
            .map(|f| self.rings[f * self.workers + to].len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ring_and_bad_worker_give_the_item_back() {
        let h: Handoff<u32> = Handoff::new(2, 2);
        assert!(h.send(0, 1, 1).is_ok() && h.send(0, 1, 2).is_ok());
        assert_eq!(h.send(0, 1, 3), Err(3));
        assert_eq!(h.send(0, 0, 4), Err(4));
        assert_eq!(h.send(0, 7, 5), Err(5));
        let mut got = vec![];
        assert_eq!(h.recv(1, 8, |x| got.push(x)), 2);
        assert_eq!(got, vec![1, 2]);
        assert_eq!(h.pending(1), 0);
    }
}
