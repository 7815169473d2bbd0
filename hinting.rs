// SPDX-License-Identifier: GPL-2.0

//! Free page hinting (`VIRTIO_BALLOON_F_FREE_PAGE_HINT`): during live
//! migration the host asks, with a fresh command id, which guest memory is
//! free, so that it need not send it.
//!
//! Exists only when the feature was negotiated; it owns its queue, the
//! blocks the host handed back, its work item, and the shrinker that gives
//! those blocks back under memory pressure.

use crate::mm::balloon::{self, Mobility, Page, PageList};
use crate::mm::shrinker::ShrinkHandler;
use crate::virtio::{Binding, BoundGuard, Buffer, QueueId, Used};
use crate::{debugfs::Counters, uapi};
use kernel::{
    new_mutex,
    prelude::*,
    sync::{
        atomic::{Atomic, Full, Relaxed},
        Arc, Mutex,
    },
    time::{delay::fsleep, Delta},
    workqueue::{self, impl_has_work, new_work, Work, WorkItem},
};

/// Order of the blocks handed to the host: the largest the allocator has
/// (4 MiB on x86-64), as in the C driver, so that few buffers cover much
/// free memory.
pub(crate) const HINT_BLOCK_ORDER: u32 = balloon::MAX_PAGE_ORDER;

/// The free page hint queue of a balloon.
#[pin_data]
pub(crate) struct Hinting {
    binding: Arc<Binding>,
    queue: QueueId,
    counters: Arc<Counters>,
    /// Set on remove and shutdown: no more work may start.
    stopping: Atomic<bool>,
    #[pin]
    work: Work<Hinting>,
    /// Blocks the host has handed back, kept until it says DONE (or the
    /// shrinker wants them). Blocks still in the queue are the queue's.
    /// Their pages are counted in `counters.hint_held_pages`, changed only
    /// under this lock. Lock order: after the device's lock.
    #[pin]
    blocks: Mutex<PageList>,
    /// The command id being (or last) answered. Only the hint work uses it.
    active: Atomic<u32>,
    /// The host's command id as last read from config space...
    received: Atomic<u32>,
    /// ...and whether the config changed since, so it must be read again.
    /// Reading it only then (as C does) costs one config read per change,
    /// not one per block.
    stale: Atomic<bool>,
    /// Set when reclaim asks the shrinker for memory: the run for the
    /// current command ends at once. A hint only spares the migration
    /// some pages; a workload that needs memory while the driver takes
    /// every free block (up to the 1023 the host's queue holds, all of a
    /// small guest's free memory) is OOM-killed otherwise, because blocks
    /// in the queue are the host's until it hands them back. Cleared by
    /// the next command.
    pressure: Atomic<bool>,
}

impl_has_work! {
    impl HasWork<Self> for Hinting { self.work }
}

impl WorkItem for Hinting {
    type Pointer = Arc<Hinting>;

    /// The host's hint command id changed.
    fn run(this: Arc<Hinting>) {
        crate::run_once(&this.stopping, "free page hinting", || {
            this.answer_command()
        });
    }
}

impl Hinting {
    /// Sets hinting up on `queue`.
    pub(crate) fn new(
        binding: Arc<Binding>,
        queue: QueueId,
        counters: Arc<Counters>,
    ) -> Result<Arc<Self>> {
        // One entry always stays free for the stop command.
        if binding.lock()?.vring_size(queue)? < 2 {
            return Err(ENOSPC);
        }
        let blocks = PageList::with_order(HINT_BLOCK_ORDER)?;
        Arc::pin_init(
            pin_init!(Self {
                binding,
                queue,
                counters,
                stopping: Atomic::new(false),
                work <- new_work!("Hinting::work"),
                blocks <- new_mutex!(blocks),
                active: Atomic::new(uapi::CMD_ID_STOP),
                received: Atomic::new(uapi::CMD_ID_STOP),
                stale: Atomic::new(true),
                pressure: Atomic::new(false),
            }),
            GFP_KERNEL,
        )
    }

    /// The config changed: the command id may have (atomic context).
    pub(crate) fn config_changed(this: &Arc<Self>) {
        if !this.stopping.load(Relaxed) {
            this.stale.store(true, Relaxed);
            let _ = workqueue::system_freezable().enqueue(this.clone());
        }
    }

    /// Stops the work item: none is queued or running afterwards.
    pub(crate) fn stop(self: &Arc<Self>) {
        crate::stop_work(&self.stopping, self);
    }

    /// Forgets the command: after a reset, the next one starts afresh (the
    /// reset gave the queue's blocks back to the allocator).
    pub(crate) fn reset(&self) {
        self.free_blocks();
        self.active.store(uapi::CMD_ID_STOP, Relaxed);
        self.stale.store(true, Relaxed);
    }

    /// The host's current command id: read from config space only if it
    /// changed since the last read.
    fn command(&self) -> Result<u32> {
        // One fully ordered exchange: a config change that marks it stale
        // after this point is read by the next call, and the config read
        // below cannot be ordered before the flag is cleared (a relaxed
        // store then a read could lose a change on a weakly ordered CPU).
        if self.stale.xchg(false, Full) {
            let cmd = self
                .binding
                .lock()?
                .read_config_le32(uapi::CONFIG_HINT_CMD_ID)?;
            self.received.store(cmd, Relaxed);
        }
        Ok(self.received.load(Relaxed))
    }

    /// Hands `block` to the host; on failure it is freed.
    fn send(&self, device: &mut BoundGuard<'_>, block: Page) -> Result {
        device
            .add_inbuf_pages(self.queue, block)
            .map_err(|(e, _)| e)?;
        Ok(())
    }

    /// Keeps the blocks the host has handed back.
    fn collect(&self, device: &mut BoundGuard<'_>) {
        let mut blocks = self.blocks.lock();
        self.collect_into(device, &mut blocks);
    }

    /// Moves the blocks the host has handed back into `blocks`. The count
    /// of held pages changes under the same guard as the list: the
    /// shrinker pops and subtracts under it too, so it never subtracts a
    /// block before it was added (which wrapped the count).
    fn collect_into(&self, device: &mut BoundGuard<'_>, blocks: &mut PageList) {
        while let Some(used) = device.take_used(self.queue) {
            if let Used::Pages(block) = used {
                let pages = block.bytes() >> kernel::page::PAGE_SHIFT;
                blocks.push(block);
                self.counters.hint_held_pages.add(pages, Relaxed);
            }
        }
    }

    /// Frees every block handed back. Blocks still in the queue stay the
    /// queue's (they come back later, or are freed when it is torn down).
    fn free_blocks(&self) {
        let mut blocks = self.blocks.lock();
        blocks.clear();
        self.counters.hint_held_pages.store(0, Relaxed);
    }

    /// Answers the host's free page hint command: hand it every free block
    /// while the command stands, then STOP; on DONE give the blocks back.
    fn answer_command(&self) -> Result {
        let cmd = self.command()?;
        match hint_action(cmd, self.active.load(Relaxed)) {
            HintAction::Wait => return Ok(()),
            HintAction::Answer => {}
            HintAction::GiveBack => {
                if let Ok(mut device) = self.binding.lock() {
                    self.collect(&mut device);
                }
                let blocks = self.blocks.lock().len();
                self.free_blocks();
                // DONE stands until the next migration and every config change
                // reads it again: say it once.
                if self.active.xchg(cmd, Relaxed) != cmd || blocks != 0 {
                    dev_info!(
                        self.binding.device(),
                        "free page hint done: {} blocks back\n",
                        blocks
                    );
                }
                return Ok(());
            }
        }
        self.active.store(cmd, Relaxed);
        self.pressure.store(false, Relaxed);
        self.send_command(cmd)?;
        let run = self.send_free_blocks(cmd);
        // The spec asks for STOP at the end of a run, however it ended.
        let stop = self.send_command(uapi::CMD_ID_STOP);
        let (sent, end) = run?;
        stop?;
        let why = match end {
            RunEnd::Pressure => ", stopped: the guest is reclaiming memory",
            RunEnd::Other => "",
        };
        dev_info!(
            self.binding.device(),
            "free page hint {:#x}: {} blocks sent{}\n",
            cmd,
            sent,
            why
        );
        Ok(())
    }

    /// Hands the host free blocks for command `cmd` until they run out,
    /// the host's command is anything else (STOP, DONE, a new id) or the
    /// guest reclaims memory; returns how many it sent, and why it ended.
    ///
    /// On STOP at once, as the C driver: a host ignores hints for a stopped
    /// command, so every block taken after it is memory the guest lacks
    /// for nothing. A new id that follows STOP marks the config stale
    /// again and queues the work, which answers it afresh.
    fn send_free_blocks(&self, cmd: u32) -> Result<(usize, RunEnd)> {
        let mut sent = 0;
        while !self.stopping.load(Relaxed) && still_hinting(self.command()?, cmd) {
            if self.pressure.load(Relaxed) {
                return Ok((sent, RunEnd::Pressure));
            }
            let room = {
                let mut device = self.binding.lock()?;
                self.collect(&mut device);
                // One slot stays free for the stop command.
                device.free_slots(self.queue)? > 1
            };
            if !room {
                // Wait for room before taking a block: allocating 4 MiB only
                // to free it again (as the C driver does when the ring is
                // full) is wasted work.
                fsleep(Delta::from_millis(1));
                continue;
            }
            // Only what is free right now, without reclaim, and unmovable:
            // the host holds it until it says DONE.
            let Some(block) = Page::alloc_free_block(HINT_BLOCK_ORDER, Mobility::Unmovable) else {
                break;
            };
            let mut device = self.binding.lock()?;
            self.send(&mut device, block)?;
            device.kick(self.queue)?;
            Counters::count(&self.counters.hinted_blocks, 1);
            sent += 1;
        }
        Ok((sent, RunEnd::Other))
    }

    /// Sends a hint command id (start or stop) on the hint queue.
    fn send_command(&self, cmd: u32) -> Result {
        let mut buf = Buffer::new(core::mem::size_of::<u32>())?;
        buf.push_le32(cmd)?;
        let mut device = self.binding.lock()?;
        self.collect(&mut device);
        device.add_outbuf(self.queue, buf).map_err(|(e, _)| e)?;
        device.kick(self.queue)
    }
}

impl ShrinkHandler for Hinting {
    /// Only the blocks the host handed back: those still in the queue are
    /// the device's, and `scan` cannot free them.
    ///
    /// Called by reclaim of the whole guest (kswapd, direct reclaim; not
    /// a cgroup's own: the shrinker is not memcg-aware), and also by
    /// `drop_caches`, the root cgroup's `memory.reclaim` and the shrinker
    /// debugfs files: any of them ends the current hint run (see
    /// `pressure`), which costs at most a hint. On a busy guest kswapd,
    /// woken once a run has taken free memory down to the low watermark,
    /// ends most runs there: where C's shrinker hands hinted blocks back
    /// to kswapd, this one stops taking them.
    ///
    /// And blocks the host hands back raise an interrupt that queues no
    /// work once the run is over, so they are collected here: otherwise
    /// nothing moves them out of the queue, the count stays 0 and reclaim
    /// never asks `scan` for them.
    fn count(&self) -> usize {
        self.pressure.store(true, Relaxed);
        // Only tried, as in `scan`: reclaim never waits here.
        if let Some(mut blocks) = self.blocks.try_lock() {
            if let Some(Ok(mut device)) = self.binding.try_lock() {
                self.collect_into(&mut device, &mut blocks);
            }
        }
        self.counters.hint_held_pages.load(Relaxed)
    }

    /// Hinted blocks may be reused at any time (the host only skips sending
    /// them if they stay untouched), so give back those the host has
    /// handed back under pressure. Blocks still in the queue are the
    /// device's until it hands them back.
    fn scan(&self, pages: usize) -> Option<usize> {
        // Never wait in reclaim: whoever holds a lock is quick, so ask
        // reclaim to move on rather than to come back at once. Both locks
        // are only tried, so their order does not matter here.
        let mut blocks = self.blocks.try_lock()?;
        if let Some(Ok(mut device)) = self.binding.try_lock() {
            self.collect_into(&mut device, &mut blocks);
        }
        let mut freed = 0;
        while freed < pages {
            let Some(block) = blocks.pop() else {
                break;
            };
            freed += block.bytes() >> kernel::page::PAGE_SHIFT;
        }
        self.counters.hint_held_pages.fetch_sub(freed, Relaxed);
        // Nothing to free (only blocks the queue holds): stop asking.
        (freed > 0).then_some(freed)
    }
}

/// What the hint work does about the host's command id `cmd`, `active`
/// being the one it last answered.
#[derive(Debug, PartialEq)]
pub(crate) enum HintAction {
    /// DONE: the host has what it needs; the blocks go back to the guest.
    GiveBack,
    /// A new id: hand the host free blocks for it.
    Answer,
    /// STOP, or the id being answered already: nothing new.
    Wait,
}

pub(crate) fn hint_action(cmd: u32, active: u32) -> HintAction {
    match cmd {
        uapi::CMD_ID_DONE => HintAction::GiveBack,
        uapi::CMD_ID_STOP => HintAction::Wait,
        cmd if cmd == active => HintAction::Wait,
        _ => HintAction::Answer,
    }
}

/// Why a hint run ended, for the log.
enum RunEnd {
    /// Reclaim asked the shrinker for memory (`Hinting::pressure`).
    Pressure,
    /// No free block left, the host's command moved on, or teardown.
    Other,
}

/// Whether blocks still go to the host for `cmd` while config space reads
/// `current`: only while it reads `cmd` (see [`Hinting::send_free_blocks`]).
pub(crate) fn still_hinting(current: u32, cmd: u32) -> bool {
    current == cmd
}
