//! GSI routing for MSI-X vectors on KVM's in-kernel irqchip.
//!
//! Every MSI-X vector gets its own GSI (from `MSI_GSI_START` up) and an
//! irqfd registered on it; the VMM delivers a vector by writing its irqfd.
//! KVM_SET_GSI_ROUTING replaces the whole table, so each update re-sends
//! KVM's default irqchip routes (what `kvm_setup_default_irq_routing`
//! installs on x86: GSI 0..16 to the PICs and the IOAPIC, GSI 16..24 to the
//! IOAPIC) followed by every MSI route. The legacy devices' irqfds on
//! GSIs 0..24 therefore keep working after the first MSI route appears.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kvm_bindings::{
    KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_MAX_IRQ_ROUTES, KvmIrqRouting, kvm_irq_routing_entry,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::vmm::layout::{IOAPIC_NUM_PINS, MSI_GSI_START};

/// GSIs routed to the 8259 pair (ISA IRQs 0..16).
pub const PIC_NUM_PINS: u32 = 16;
/// Pins per 8259.
const PIC_PINS_PER_CHIP: u32 = 8;

/// An MSI message (PCI 3.0 §6.8.3.2): where the device writes and what.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// One entry of the GSI routing table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// GSI -> pin of an in-kernel irqchip (`KVM_IRQCHIP_*`).
    Irqchip { gsi: u32, chip: u32, pin: u32 },
    /// GSI -> MSI message.
    Msi { gsi: u32, message: MsiMessage },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no GSI left for MSI vectors (KVM allows {KVM_MAX_IRQ_ROUTES} routes)")]
    OutOfGsis,
    #[error("cannot create the irqfd for GSI {0}")]
    EventFd(u32, #[source] std::io::Error),
    #[error("KVM_IRQFD for GSI {0}")]
    RegisterIrqfd(u32, #[source] kvm_ioctls::Error),
    #[error("cannot build a routing table of {0} entries")]
    RoutingTable(usize),
    #[error("KVM_SET_GSI_ROUTING")]
    SetGsiRouting(#[source] kvm_ioctls::Error),
}

/// KVM's default x86 routes: GSI n -> PIC pin n for n < 16 (master 0..8,
/// slave 8..16), and GSI n -> IOAPIC pin n for n < IOAPIC_NUM_PINS.
pub fn default_irqchip_routes() -> Vec<Route> {
    let mut routes = Vec::new();
    for gsi in 0..IOAPIC_NUM_PINS {
        if gsi < PIC_NUM_PINS {
            let (chip, pin) = if gsi < PIC_PINS_PER_CHIP {
                (KVM_IRQCHIP_PIC_MASTER, gsi)
            } else {
                (KVM_IRQCHIP_PIC_SLAVE, gsi - PIC_PINS_PER_CHIP)
            };
            routes.push(Route::Irqchip { gsi, chip, pin });
        }
        routes.push(Route::Irqchip {
            gsi,
            chip: KVM_IRQCHIP_IOAPIC,
            pin: gsi,
        });
    }
    routes
}

/// The whole routing table: the default irqchip routes, then `msi`.
pub fn routing_table(msi: &BTreeMap<u32, MsiMessage>) -> Vec<Route> {
    let mut routes = default_irqchip_routes();
    routes.extend(msi.iter().map(|(gsi, message)| Route::Msi {
        gsi: *gsi,
        message: *message,
    }));
    routes
}

fn kvm_entry(route: &Route) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry::default();
    match *route {
        Route::Irqchip { gsi, chip, pin } => {
            entry.gsi = gsi;
            entry.type_ = KVM_IRQ_ROUTING_IRQCHIP;
            entry.u.irqchip.irqchip = chip;
            entry.u.irqchip.pin = pin;
        }
        Route::Msi { gsi, message } => {
            entry.gsi = gsi;
            entry.type_ = KVM_IRQ_ROUTING_MSI;
            entry.u.msi.address_lo = message.address as u32;
            entry.u.msi.address_hi = (message.address >> 32) as u32;
            entry.u.msi.data = message.data;
        }
    }
    entry
}

/// A vector's GSI and the irqfd that raises it.
pub struct MsiVector {
    pub gsi: u32,
    pub irqfd: EventFd,
}

/// Allocates MSI GSIs and keeps their routes.
pub trait MsiRouter: Send + Sync {
    /// A fresh GSI with an irqfd registered on it (no route yet).
    fn allocate_vector(&self) -> Result<MsiVector, Error>;
    /// Route `gsi` to `message`, replacing its previous route.
    fn set_route(&self, gsi: u32, message: MsiMessage) -> Result<(), Error>;
}

struct RouterState {
    next_gsi: u32,
    msi: BTreeMap<u32, MsiMessage>,
}

/// The router on a real VM (with an in-kernel irqchip).
pub struct KvmMsiRouter {
    vm: Arc<VmFd>,
    state: Mutex<RouterState>,
}

impl KvmMsiRouter {
    /// Installs the default table right away, so routing is in a known
    /// state before any device needs it.
    pub fn new(vm: Arc<VmFd>) -> Result<Self, Error> {
        let router = KvmMsiRouter {
            vm,
            state: Mutex::new(RouterState {
                next_gsi: MSI_GSI_START,
                msi: BTreeMap::new(),
            }),
        };
        router.commit(&router.lock())?;
        Ok(router)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RouterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn commit(&self, state: &RouterState) -> Result<(), Error> {
        let entries: Vec<kvm_irq_routing_entry> =
            routing_table(&state.msi).iter().map(kvm_entry).collect();
        let table = KvmIrqRouting::from_entries(&entries)
            .map_err(|_| Error::RoutingTable(entries.len()))?;
        self.vm
            .set_gsi_routing(&table)
            .map_err(Error::SetGsiRouting)
    }
}

/// Irqchip routes in the table, which also use up KVM's route budget.
fn irqchip_route_count() -> usize {
    (PIC_NUM_PINS + IOAPIC_NUM_PINS) as usize
}

impl MsiRouter for KvmMsiRouter {
    fn allocate_vector(&self) -> Result<MsiVector, Error> {
        let mut state = self.lock();
        let gsi = state.next_gsi;
        let used = (gsi - MSI_GSI_START) as usize + irqchip_route_count();
        if used >= KVM_MAX_IRQ_ROUTES {
            return Err(Error::OutOfGsis);
        }
        let irqfd = EventFd::new(EFD_NONBLOCK).map_err(|e| Error::EventFd(gsi, e))?;
        self.vm
            .register_irqfd(&irqfd, gsi)
            .map_err(|e| Error::RegisterIrqfd(gsi, e))?;
        state.next_gsi += 1;
        Ok(MsiVector { gsi, irqfd })
    }

    fn set_route(&self, gsi: u32, message: MsiMessage) -> Result<(), Error> {
        let mut state = self.lock();
        let previous = state.msi.insert(gsi, message);
        let result = self.commit(&state);
        if result.is_err() {
            // Keep our copy equal to what KVM has.
            match previous {
                Some(p) => state.msi.insert(gsi, p),
                None => state.msi.remove(&gsi),
            };
        }
        result
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A router without KVM: plain eventfds, routes recorded.
    #[derive(Default)]
    pub struct RecordingRouter {
        pub next_gsi: Mutex<u32>,
        pub routes: Mutex<BTreeMap<u32, MsiMessage>>,
        pub updates: Mutex<usize>,
    }

    impl MsiRouter for RecordingRouter {
        fn allocate_vector(&self) -> Result<MsiVector, Error> {
            let mut next = self.next_gsi.lock().unwrap();
            let gsi = MSI_GSI_START + *next;
            *next += 1;
            Ok(MsiVector {
                gsi,
                irqfd: EventFd::new(EFD_NONBLOCK).unwrap(),
            })
        }
        fn set_route(&self, gsi: u32, message: MsiMessage) -> Result<(), Error> {
            self.routes.lock().unwrap().insert(gsi, message);
            *self.updates.lock().unwrap() += 1;
            Ok(())
        }
    }

    #[test]
    fn default_routes_mirror_kvm() {
        let routes = default_irqchip_routes();
        assert_eq!(routes.len(), 16 + 24);
        // GSI 4 (COM1) reaches both the master PIC and the IOAPIC.
        let com1: Vec<_> = routes
            .iter()
            .filter(|r| matches!(r, Route::Irqchip { gsi: 4, .. }))
            .collect();
        assert_eq!(
            com1,
            [
                &Route::Irqchip {
                    gsi: 4,
                    chip: KVM_IRQCHIP_PIC_MASTER,
                    pin: 4
                },
                &Route::Irqchip {
                    gsi: 4,
                    chip: KVM_IRQCHIP_IOAPIC,
                    pin: 4
                }
            ]
        );
        assert!(routes.contains(&Route::Irqchip {
            gsi: 9,
            chip: KVM_IRQCHIP_PIC_SLAVE,
            pin: 1
        }));
        assert!(routes.contains(&Route::Irqchip {
            gsi: 23,
            chip: KVM_IRQCHIP_IOAPIC,
            pin: 23
        }));
        assert!(!routes.iter().any(|r| matches!(
            r,
            Route::Irqchip { gsi, chip, .. } if *gsi >= 16 && *chip != KVM_IRQCHIP_IOAPIC
        )));
    }

    #[test]
    fn msi_routes_follow_the_defaults() {
        let mut msi = BTreeMap::new();
        let m = MsiMessage {
            address: 0xfee0_1000,
            data: 0x4041,
        };
        msi.insert(MSI_GSI_START + 1, m);
        let table = routing_table(&msi);
        assert_eq!(table.len(), 41);
        assert_eq!(
            table[40],
            Route::Msi {
                gsi: MSI_GSI_START + 1,
                message: m
            }
        );
        let entry = kvm_entry(&table[40]);
        assert_eq!(entry.type_, KVM_IRQ_ROUTING_MSI);
        assert_eq!(entry.gsi, 25);
        // SAFETY: the entry was built as an MSI entry just above.
        let msi_entry = unsafe { entry.u.msi };
        assert_eq!(
            (msi_entry.address_lo, msi_entry.address_hi, msi_entry.data),
            (0xfee0_1000, 0, 0x4041)
        );
    }
}
