//! The control core's end of the requests it forwards to the active controller through the
//! controller shard (Kafka's broker-to-controller channel): producer-id blocks
//! (AllocateProducerIds), a partition leader's ISR changes (AlterPartition, stamped with this
//! broker's id and epoch by the shard) and, on a cluster, the topic changes a broker does not
//! decide itself (CreateTopics, CreatePartitions, DeleteTopics). One request is in flight at a
//! time; the shard finds the active controller, retries across an election, and answers with
//! the controller's response or `Err(())` when none could be had.

use std::cell::RefCell;

use glommio::channels::shared_channel::{
    ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::sync::Semaphore;
use sluice_net::{Request, Response};

/// The controller's answer to one forwarded request, or why there is none.
pub type Forwarded = Result<Response, ()>;

/// The request and answer channels, connected when the control core starts
/// ([`ControllerLink::connect_in_background`]) or on first use, whichever comes first.
pub struct ControllerLink {
    unconnected: RefCell<Option<(SharedSender<Request>, SharedReceiver<Forwarded>)>>,
    connected: RefCell<Option<(ConnectedSender<Request>, ConnectedReceiver<Forwarded>)>>,
    one_at_a_time: Semaphore,
}

impl std::fmt::Debug for ControllerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerLink").finish_non_exhaustive()
    }
}

impl ControllerLink {
    /// Over these channels, whose other ends the controller shard holds.
    pub fn new(requests: SharedSender<Request>, replies: SharedReceiver<Forwarded>) -> Self {
        ControllerLink {
            unconnected: RefCell::new(Some((requests, replies))),
            connected: RefCell::new(None),
            one_at_a_time: Semaphore::new(1),
        }
    }

    /// Connects both channels now, in a task of its own. Until both ends of a glommio shared
    /// channel are connected, the executor of a side waiting in `connect` wakes that wait on
    /// every turn of its loop and never sleeps: the controller shard's thread, whose end is
    /// connected at its start, spun at 70% of a CPU on an idle node while this end waited for
    /// a first forwarded request.
    pub fn connect_in_background(self: &std::rc::Rc<Self>) {
        let link = std::rc::Rc::clone(self);
        glommio::spawn_local(async move {
            if let Ok(_turn) = link.one_at_a_time.acquire_permit(1).await {
                link.connect_if_needed().await;
            }
        })
        .detach();
    }

    /// Connects the channels unless done already; the caller holds the turn.
    async fn connect_if_needed(&self) {
        let pending = self.unconnected.borrow_mut().take();
        if let Some((requests, replies)) = pending {
            let requests = requests.connect().await;
            let replies = replies.connect().await;
            *self.connected.borrow_mut() = Some((requests, replies));
        }
    }

    /// Sends `request` to the active controller and waits for its answer.
    pub async fn call(&self, request: Request) -> Forwarded {
        let _turn = self.one_at_a_time.acquire_permit(1).await.map_err(|_| ())?;
        self.connect_if_needed().await;
        let link = self.connected.borrow_mut().take();
        let (requests, replies) = link.ok_or(())?;
        let answer = match requests.send(request).await {
            Ok(()) => replies.recv().await.unwrap_or(Err(())),
            Err(_) => Err(()),
        };
        *self.connected.borrow_mut() = Some((requests, replies));
        answer
    }
}
