// SPDX-License-Identifier: GPL-2.0

//! rust_balloon: a virtio memory balloon driver (virtio device ID 5).
//!
//! The host sets a target balloon size in the device's config space; the
//! driver inflates (allocates guest pages and tells the host it may take
//! them) or deflates (tells the host, then frees pages) until the balloon
//! holds that many 4 KiB pages, and reports the size back in `actual`.
//!
//! This file holds the balloon logic only; every operation the compiler cannot
//! check lives in the [`virtio`] layer.

mod virtio;

use core::sync::atomic::{AtomicBool, Ordering};
use kernel::{
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
    time::{delay::fsleep, Delta},
    workqueue::{self, impl_has_work, new_work, Work, WorkItem},
};
use virtio::{
    available_pages as guest_available_pages, balloon_uapi as uapi, BalloonPages, Binding,
    BoundGuard, Buffer, Device, Page, PageList, QueueId, QueueInfo, PFNS_PER_PAGE,
};

module! {
    type: BalloonModule,
    name: "rust_balloon",
    authors: ["rust-balloon developers"],
    description: "Virtio memory balloon driver, in Rust",
    license: "GPL",
    alias: ["virtio:d00000005v*"],
    params: {
        min_available_mib: u32 {
            default: 64,
            description: "Never inflate below this much available guest memory (MiB)",
        },
    },
}

/// Inflate queue: PFNs of pages the guest gives up.
const INFLATE_QUEUE: QueueId = QueueId(0);
/// Deflate queue: PFNs of pages the guest takes back.
const DEFLATE_QUEUE: QueueId = QueueId(1);

/// Batches of PFNs one work run may send before it yields the worker, so a
/// large target does not hold up the freezer or other work.
const BATCHES_PER_RUN: usize = 64;

/// How long to wait before retrying when the guest has no memory to give.
const ALLOC_BACKOFF: Delta = Delta::from_millis(200);

/// What one step towards the target achieved.
enum Step {
    /// At the target: nothing left to do.
    Done,
    /// Moved some pages; more to do.
    Progress,
    /// Could not allocate a single page (inflate) or dequeue one (deflate,
    /// while compaction holds them): try again later.
    Stalled,
}

/// State that changes as the balloon moves, under [`Balloon::state`].
struct State {
    /// Balloon size in 4 KiB pages: what the host has been told.
    num_pages: u32,
    /// The PFN buffer; `None` while the host holds it (or after a failed
    /// send lost it: the next batch allocates a new one).
    pfns: Option<KBox<Buffer>>,
    /// Whether the last inflate could not allocate (logged once per stall).
    out_of_puff: bool,
}

/// One balloon device.
#[pin_data]
struct Balloon {
    binding: Arc<Binding>,
    #[pin]
    pages: BalloonPages,
    #[pin]
    state: Mutex<State>,
    /// Set on remove: no more work may start.
    stopping: AtomicBool,
    #[pin]
    resize_work: Work<Balloon>,
}

impl_has_work! {
    impl HasWork<Self> for Balloon { self.resize_work }
}

impl WorkItem for Balloon {
    type Pointer = Arc<Balloon>;

    fn run(this: Arc<Balloon>) {
        for _ in 0..BATCHES_PER_RUN {
            if this.stopping.load(Ordering::Acquire) {
                return;
            }
            match this.step() {
                Ok(Step::Done) => return,
                Ok(Step::Progress) => {}
                Ok(Step::Stalled) => {
                    fsleep(ALLOC_BACKOFF);
                    break;
                }
                Err(ENODEV) => return,
                Err(e) => {
                    pr_err!("rust_balloon: resize failed: {:?}\n", e);
                    fsleep(ALLOC_BACKOFF);
                    break;
                }
            }
        }
        Balloon::schedule_resize(&this);
    }
}

impl Balloon {
    /// Queues a resize unless the device is going away. Callable from atomic
    /// context.
    fn schedule_resize(this: &Arc<Self>) {
        if !this.stopping.load(Ordering::Acquire) {
            // Already queued is fine: that run will read the new target.
            let _ = workqueue::system_freezable().enqueue(this.clone());
        }
    }

    /// The host's target, in 4 KiB pages, rounded up to whole guest pages so
    /// the balloon never oscillates around a target it cannot hit.
    fn target(&self) -> Result<u32> {
        let target = self
            .binding
            .lock()?
            .read_config_le32(uapi::CONFIG_NUM_PAGES)?;
        Ok(target
            .div_ceil(PFNS_PER_PAGE as u32)
            .saturating_mul(PFNS_PER_PAGE as u32))
    }

    /// Moves the balloon one batch towards the target.
    fn step(&self) -> Result<Step> {
        let target = self.target()?;
        let current = self.state.lock().num_pages;
        let step = if target > current {
            self.inflate((target - current) as usize)?
        } else if target < current {
            self.deflate((current - target) as usize)?
        } else {
            Step::Done
        };
        self.report_actual()?;
        Ok(step)
    }

    /// Tells the host how large the balloon is.
    fn report_actual(&self) -> Result {
        let actual = self.state.lock().num_pages;
        self.binding
            .lock()?
            .write_config_le32(uapi::CONFIG_ACTUAL, actual)
    }

    /// Adds up to one buffer's worth of the `wanted` 4 KiB pages.
    ///
    /// Unlike the C driver, it stops short of the guest's last
    /// `min_available_mib`: a target larger than the guest can give would
    /// otherwise leave nothing for anyone else and end in the OOM killer.
    fn inflate(&self, wanted: usize) -> Result<Step> {
        let spare = guest_available_pages().saturating_sub(reserve_pages()) * PFNS_PER_PAGE;
        let wanted = wanted.min(uapi::MAX_PFNS_PER_BUFFER).min(spare);
        let mut list = PageList::new()?;
        while (list.len() + 1) * PFNS_PER_PAGE <= wanted {
            match Page::alloc() {
                Some(page) => list.push(page),
                None => break,
            }
        }
        let mut state = self.state.lock();
        if list.is_empty() {
            if !state.out_of_puff {
                pr_info!(
                    "rust_balloon: out of puff: no page to spare (keeping {} MiB available), backing off\n",
                    *module_parameters::min_available_mib.value()
                );
                state.out_of_puff = true;
            }
            return Ok(Step::Stalled);
        }
        state.out_of_puff = false;
        let mut device = self.binding.lock()?;
        // Fill the buffer before the pages go into the balloon: from then
        // on compaction may move them.
        let pfns = fill_pfns(&mut state, &list)?;
        let added = list.len() * PFNS_PER_PAGE;
        self.pages.enqueue(&mut list);
        state.num_pages += added as u32;
        state.tell_host(&mut device, INFLATE_QUEUE, pfns)?;
        Ok(Step::Progress)
    }

    /// Gives back up to one buffer's worth of the `wanted` 4 KiB pages:
    /// tells the host first, then frees them.
    fn deflate(&self, wanted: usize) -> Result<Step> {
        let mut state = self.state.lock();
        let wanted = wanted
            .min(uapi::MAX_PFNS_PER_BUFFER)
            .min(state.num_pages as usize);
        let mut list = PageList::new()?;
        if self.pages.dequeue(&mut list, wanted / PFNS_PER_PAGE) == 0 {
            return Ok(Step::Stalled);
        }
        // From here on the pages are out of the balloon, whatever happens:
        // they are freed when `list` goes out of scope.
        state.num_pages -= (list.len() * PFNS_PER_PAGE) as u32;
        let pfns = fill_pfns(&mut state, &list)?;
        // Pages go back to the guest only once the host knows
        // (VIRTIO_BALLOON_F_MUST_TELL_HOST). A host that is gone cannot
        // object, so they are freed either way.
        let mut device = self.binding.lock()?;
        state.tell_host(&mut device, DEFLATE_QUEUE, pfns)?;
        Ok(Step::Progress)
    }

    /// Empties the balloon: used on remove, with work stopped.
    fn deflate_all(&self) {
        loop {
            let left = self.state.lock().num_pages as usize;
            if left == 0 {
                break;
            }
            match self.deflate(left) {
                Ok(Step::Stalled) => fsleep(Delta::from_millis(10)),
                Ok(_) => {}
                Err(e) => {
                    pr_err!("rust_balloon: deflate on remove failed: {:?}\n", e);
                    break;
                }
            }
        }
        let _ = self.report_actual();
    }
}

/// Guest pages inflation leaves to the guest (`min_available_mib`).
fn reserve_pages() -> usize {
    let mib = *module_parameters::min_available_mib.value() as usize;
    mib << (20 - kernel::page::PAGE_SHIFT)
}

/// Bytes in a full PFN buffer.
const fn pfn_buffer_bytes() -> usize {
    uapi::MAX_PFNS_PER_BUFFER * core::mem::size_of::<u32>()
}

/// The PFN buffer filled with the 4 KiB frame numbers of every page of
/// `list`.
fn fill_pfns(state: &mut State, list: &PageList) -> Result<KBox<Buffer>> {
    let mut buf = match state.pfns.take() {
        Some(buf) => buf,
        // Lost with a failed send: make a new one.
        None => Buffer::new(pfn_buffer_bytes())?,
    };
    buf.clear();
    let mut result = Ok(());
    list.for_each_pfn(|first| {
        for pfn in first..first + PFNS_PER_PAGE as u64 {
            // The protocol has 32-bit PFNs: 16 TiB of guest memory.
            let pfn = u32::try_from(pfn).map_err(|_| ERANGE);
            result = result.and_then(|()| buf.push_le32(pfn?));
        }
    });
    result.map(|()| buf)
}

impl State {
    /// Sends `pfns` on `queue` and waits for the host, keeping the buffer
    /// for next time.
    fn tell_host(
        &mut self,
        device: &mut BoundGuard<'_>,
        queue: QueueId,
        pfns: KBox<Buffer>,
    ) -> Result {
        self.pfns = Some(device.send_and_wait(queue, pfns)?);
        Ok(())
    }
}

impl virtio::Driver for Balloon {
    const NAME: &'static CStr = c"rust_balloon";
    const DEVICE_ID: u32 = uapi::DEVICE_ID;
    const FEATURES: &'static [u32] = &[uapi::F_MUST_TELL_HOST];

    fn probe(dev: &Device, binding: Arc<Binding>) -> Result<Arc<Self>> {
        binding.lock()?.find_vqs(&[
            QueueInfo {
                name: c"inflate",
                callback: true,
            },
            QueueInfo {
                name: c"deflate",
                callback: true,
            },
        ])?;
        let pfns = Buffer::new(pfn_buffer_bytes())?;
        let balloon = Arc::pin_init(
            pin_init!(Balloon {
                binding,
                // Without deflate-on-OOM, ballooned memory leaves MemTotal.
                pages <- BalloonPages::new(true),
                state <- new_mutex!(State { num_pages: 0, pfns: Some(pfns), out_of_puff: false }),
                stopping: AtomicBool::new(false),
                resize_work <- new_work!("Balloon::resize_work"),
            }),
            GFP_KERNEL,
        )?;
        dev_info!(
            dev.as_dev(),
            "rust_balloon bound (must-tell-host: {})\n",
            dev.has_feature(uapi::F_MUST_TELL_HOST)
        );
        Ok(balloon)
    }

    fn ready(this: &Arc<Self>) {
        Self::schedule_resize(this);
    }

    fn config_changed(this: &Arc<Self>) {
        Self::schedule_resize(this);
    }

    fn remove(this: &Arc<Self>, dev: &Device) {
        this.stopping.store(true, Ordering::Release);
        // A run that started before `stopping` may have queued one more.
        while virtio::flush_work(&this.resize_work) {}
        let pages = this.state.lock().num_pages;
        this.deflate_all();
        dev_info!(
            dev.as_dev(),
            "rust_balloon removed, {} pages returned\n",
            pages
        );
    }
}

struct BalloonModule {
    _registration: Pin<KBox<virtio::Registration<Balloon>>>,
}

impl kernel::Module for BalloonModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let registration = KBox::pin_init(virtio::Registration::new(module), GFP_KERNEL)?;
        Ok(Self {
            _registration: registration,
        })
    }
}
