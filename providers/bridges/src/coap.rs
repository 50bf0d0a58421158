//! The CoAP inbox: `POST /i40commu` over UDP (RFC 7252, coap-lite for the
//! codec, with block-wise transfer per RFC 7959). Answers are piggy-backed on the ACK of a confirmable request (a
//! NON response to a non-confirmable one): 2.04 Changed with the ack or
//! error message (Content-Format 50), 2.04 empty for a routed message, 4.00
//! for input that is not an I4.0 message, 4.04 / 4.05 for other paths and
//! methods, 5.03 when the broker ran past its deadline (or none is linked),
//! 5.00 when it failed, 4.00 also for a request that does not decode (truncated). A
//! datagram that is not CoAP at all is logged and dropped, or answered with
//! a Reset when its header could be read. A retransmitted request (same
//! peer, same message id) gets the first copy's answer and is not routed
//! again (`coap_exchanges`). A confirmable request not answered within a
//! second gets an empty ACK and its answer later, as a separate response
//! (`coap_separate`). Large requests come in as Block1 pieces, reassembled
//! within bounds (`coap_block1`: 4.13 over `--max-body-bytes`, 5.03 when
//! too many transfers are under way); method and path are checked before
//! anything is buffered.

use crate::coap_block1::{Block, Block1Error, Limits, Progress, Reassembler};
use crate::coap_rate::{Admit, RateLimiter};
use crate::coap_exchanges::{Answer, AnswerOf, Exchanges, Pending, Seen, CAPACITY, EXCHANGE_LIFETIME};
use crate::coap_separate::{empty_ack, is_confirmable, Confirmations, SEPARATE_AFTER};
use crate::inbox::{Inbox, InboxError, Outcome, Protocol};
use coap_lite::{BlockHandler, BlockHandlerConfig, CoapOption, CoapRequest, ContentFormat, MessageClass, MessageType, Packet, RequestType, ResponseType};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::UdpSocket;

/// Block-wise transfer state (RFC 7959), shared by all requests: answers
/// larger than one datagram (1,152 bytes, RFC 7252's default) go out in
/// Block2 pieces (coap-lite's handler), large requests come in as Block1
/// pieces (our bounded reassembler; coap-lite's has no bounds).
struct Blocks {
    block2: Mutex<BlockHandler<SocketAddr>>,
    block1: Mutex<Reassembler>,
    max_body_bytes: usize,
}

/// Serve the CoAP inbox on `socket`; request bodies (whole or reassembled)
/// may be at most `limits.max_body_bytes`.
pub async fn serve(inbox: Arc<dyn Inbox>, socket: UdpSocket, limits: Limits) {
    enlarge_receive_buffer(&socket);
    let socket = Arc::new(socket);
    let blocks = Arc::new(Blocks {
        block2: Mutex::new(BlockHandler::new(BlockHandlerConfig::default())),
        block1: Mutex::new(Reassembler::new(limits)),
        max_body_bytes: limits.max_body_bytes,
    });
    let exchanges = Arc::new(Exchanges::new(EXCHANGE_LIFETIME, CAPACITY));
    let confirmations = Arc::new(Confirmations::new());
    let mut buf = vec![0u8; 65_536];
    let mut rate = RateLimiter::new(limits.rate);
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::warn!(error = %e, "coap receive failed");
                continue;
            }
        };
        // Before anything else: a flooding source costs one lookup here.
        if let Admit::No { warn } = rate.admit(peer.ip(), Instant::now()) {
            if let Some(dropped) = warn {
                tracing::warn!(ip = %peer.ip(), dropped, per_second = limits.rate.per_second, "coap datagrams over the per-address rate dropped");
            }
            continue;
        }
        let datagram = buf[..n].to_vec();
        if confirmations.confirm(peer, &datagram) {
            continue;
        }
        let request = match request_message_id(&datagram) {
            Some(id) => match exchanges.seen(peer, id, Instant::now()) {
                Seen::Copy(first) => {
                    tracing::debug!(%peer, "retransmitted CoAP request: answered as the first copy, not processed again");
                    tokio::spawn(send_when_answered(socket.clone(), peer, first));
                    continue;
                }
                Seen::New(pending) => Some((id, pending)),
            },
            None => None,
        };
        let permit = inbox.admit().await;
        let (inbox, socket, blocks, confirmations) = (inbox.clone(), socket.clone(), blocks.clone(), confirmations.clone());
        tokio::spawn(async move {
            // The permit bounds the work, not the sending of its answer.
            let work = async {
                let mut packet = None;
                permit.run(async { packet = handle(&*inbox, &blocks, &datagram, peer).await }).await;
                packet
            };
            match request {
                Some((id, pending)) if is_confirmable(&datagram) => {
                    answer_confirmable(&socket, &confirmations, peer, id, pending, work).await
                }
                other => answer_once(&socket, peer, work.await, other.map(|(_, pending)| pending)).await,
            }
        });
    }
}

/// A confirmable request's answer: piggy-backed on the ACK when `work` is
/// done within SEPARATE_AFTER, else an empty ACK now (which copies of the
/// request then get too) and the answer as a separate response.
async fn answer_confirmable(
    socket: &UdpSocket,
    confirmations: &Confirmations,
    peer: SocketAddr,
    message_id: u16,
    pending: Pending,
    work: impl Future<Output = Option<Packet>>,
) {
    tokio::pin!(work);
    if let Ok(packet) = tokio::time::timeout(SEPARATE_AFTER, &mut work).await {
        return answer_once(socket, peer, packet, Some(pending)).await;
    }
    let ack: Answer = Arc::from(&empty_ack(message_id)[..]);
    pending.finish(Some(ack.clone()));
    send(socket, peer, &ack).await;
    if let Some(packet) = work.await {
        confirmations.send(socket, peer, packet).await;
    }
}

/// Send `packet` as the answer, and hand it to the request's copies.
async fn answer_once(socket: &UdpSocket, peer: SocketAddr, packet: Option<Packet>, pending: Option<Pending>) {
    let answer = packet.and_then(|packet| match packet.to_bytes() {
        Ok(bytes) => Some(Answer::from(bytes)),
        Err(e) => {
            tracing::error!(%peer, error = ?e, "coap answer does not encode");
            None
        }
    });
    if let Some(pending) = pending {
        pending.finish(answer.clone());
    }
    if let Some(bytes) = answer {
        send(socket, peer, &bytes).await;
    }
}

async fn send(socket: &UdpSocket, peer: SocketAddr, bytes: &[u8]) {
    if let Err(e) = socket.send_to(bytes, peer).await {
        tracing::warn!(%peer, error = %e, "coap send failed");
    }
}

async fn send_when_answered(socket: Arc<UdpSocket>, peer: SocketAddr, first: AnswerOf) {
    if let Some(bytes) = first.answer().await {
        send(&socket, peer, &bytes).await;
    }
}

/// Bytes of datagrams the kernel may hold for the inbox. The default
/// (about 200 KiB) is gone in a few milliseconds of a flood, and then the
/// kernel drops other senders' datagrams too; with this, the receive loop
/// (which drops a flooding address's excess at the cost of a lookup) has
/// time to catch up. The kernel may grant less (net.core.rmem_max).
const RECEIVE_BUFFER_BYTES: usize = 8 << 20;

fn enlarge_receive_buffer(socket: &UdpSocket) {
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.set_recv_buffer_size(RECEIVE_BUFFER_BYTES) {
        tracing::warn!(error = %e, "cannot enlarge the CoAP receive buffer");
    }
    match sock.recv_buffer_size() {
        Ok(got) if got < RECEIVE_BUFFER_BYTES => {
            tracing::info!(wanted = RECEIVE_BUFFER_BYTES, got, "CoAP receive buffer smaller than wanted (raise net.core.rmem_max)")
        }
        _ => {}
    }
}

/// The message id of a datagram whose header says it is a CoAP request
/// (version 1, a request code), the key of its exchange.
fn request_message_id(datagram: &[u8]) -> Option<u16> {
    let is_request = datagram.len() >= 4 && datagram[0] >> 6 == 1 && datagram[1] >> 5 == 0 && datagram[1] != 0;
    is_request.then(|| u16::from_be_bytes([datagram[2], datagram[3]]))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Fill the request's response.
fn answer(request: &mut CoapRequest<SocketAddr>, status: ResponseType, payload: Vec<u8>, json: bool) {
    if let Some(response) = request.response.as_mut() {
        response.set_status(status);
        if json {
            response.message.set_content_format(ContentFormat::ApplicationJSON);
        }
        response.message.payload = payload;
    }
}

fn path_of(packet: &Packet) -> String {
    packet
        .get_option(coap_lite::CoapOption::UriPath)
        .map(|segments| segments.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect::<Vec<_>>().join("/"))
        .unwrap_or_default()
}

async fn handle(inbox: &dyn Inbox, blocks: &Blocks, datagram: &[u8], peer: SocketAddr) -> Option<Packet> {
    let packet = match Packet::from_bytes(datagram) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(%peer, error = ?e, len = datagram.len(), "malformed CoAP message");
            return malformed_answer(datagram);
        }
    };
    match packet.header.code {
        MessageClass::Request(_) => {}
        // Pings (empty CON) get a Reset, as RFC 7252 §4.3 says; anything
        // else that is not a request is not for us.
        MessageClass::Empty if packet.header.get_type() == MessageType::Confirmable => return malformed_answer(datagram),
        _ => return None,
    }
    let mut request = CoapRequest::from_packet(packet, peer);
    // Method and path first: nothing is buffered for a request the inbox
    // would not take.
    if let Some((status, why)) = misdirected(&request.message) {
        answer(&mut request, status, why.as_bytes().to_vec(), false);
        return request.response.map(|r| r.message);
    }
    let mut block1_answer = None;
    if let Some(value) = request.message.get_first_option(CoapOption::Block1).cloned() {
        let Some(block) = Block::parse(&value) else {
            answer(&mut request, ResponseType::BadRequest, b"malformed Block1 option".to_vec(), false);
            return request.response.map(|r| r.message);
        };
        let size1 = request.message.get_first_option(CoapOption::Size1).map(|v| v.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)));
        let progress = lock(&blocks.block1).block(peer, block, size1, &request.message.payload, Instant::now());
        match progress {
            Ok(Progress::Continue(block)) => {
                answer(&mut request, ResponseType::Continue, Vec::new(), false);
                set_block1(&mut request, block);
                return request.response.map(|r| r.message);
            }
            Ok(Progress::Complete { body, block }) => {
                request.message.clear_option(CoapOption::Block1);
                request.message.clear_option(CoapOption::Size1);
                request.message.payload = body;
                block1_answer = Some(block);
            }
            Err(e) => {
                refuse_block(&mut request, peer, &e, blocks.max_body_bytes);
                return request.response.map(|r| r.message);
            }
        }
    } else if request.message.payload.len() > blocks.max_body_bytes {
        let e = Block1Error::TooLarge { max: blocks.max_body_bytes };
        refuse_block(&mut request, peer, &e, blocks.max_body_bytes);
        return request.response.map(|r| r.message);
    }
    // coap-lite's handler for Block2 (and the size negotiation of requests
    // that came in one datagram); a reassembled body is not shown to it, or
    // it would ask for it again block-wise.
    let body = block1_answer.is_some().then(|| std::mem::take(&mut request.message.payload));
    let intercepted = lock(&blocks.block2).intercept_request(&mut request);
    if let Some(body) = body {
        request.message.payload = body;
    }
    match intercepted {
        Ok(true) => return request.response.map(|r| r.message),
        Ok(false) => {}
        Err(e) => {
            request.apply_from_error(e);
            return request.response.map(|r| r.message);
        }
    }
    process(inbox, &mut request, peer).await;
    if let Err(e) = lock(&blocks.block2).intercept_response(&mut request) {
        request.apply_from_error(e);
    }
    if let Some(block) = block1_answer {
        set_block1(&mut request, block);
    }
    request.response.map(|r| r.message)
}

/// The answer for a request to another path or with another method than
/// `POST /i40commu`, if it is one.
fn misdirected(packet: &Packet) -> Option<(ResponseType, &'static str)> {
    if path_of(packet) != "i40commu" {
        return Some((ResponseType::NotFound, "no such resource; POST to /i40commu"));
    }
    if packet.header.code != MessageClass::Request(RequestType::Post) {
        return Some((ResponseType::MethodNotAllowed, "POST only"));
    }
    None
}

fn set_block1(request: &mut CoapRequest<SocketAddr>, block: Block) {
    if let Some(response) = request.response.as_mut() {
        response.message.clear_option(CoapOption::Block1);
        response.message.add_option(CoapOption::Block1, block.encode());
    }
}

/// Answer a refused block in CoAP's terms: 4.13 (with Size1, the largest
/// body taken), 5.03, 4.08 or 4.00.
fn refuse_block(request: &mut CoapRequest<SocketAddr>, peer: SocketAddr, e: &Block1Error, max_body_bytes: usize) {
    let status = match e {
        Block1Error::TooLarge { .. } => ResponseType::RequestEntityTooLarge,
        Block1Error::TooManyTransfers { .. } => ResponseType::ServiceUnavailable,
        Block1Error::Incomplete { .. } => ResponseType::RequestEntityIncomplete,
        _ => ResponseType::BadRequest,
    };
    match e {
        Block1Error::TooLarge { .. } | Block1Error::TooManyTransfers { .. } => {
            tracing::warn!(%peer, error = %e, "CoAP request refused: over a limit")
        }
        _ => tracing::info!(%peer, error = %e, "CoAP block refused"),
    }
    answer(request, status, e.to_string().into_bytes(), false);
    if let (Block1Error::TooLarge { .. }, Some(response)) = (e, request.response.as_mut()) {
        let max = u32::try_from(max_body_bytes).unwrap_or(u32::MAX).to_be_bytes();
        let skip = max.iter().take(3).take_while(|b| **b == 0).count();
        response.message.add_option(CoapOption::Size1, max[skip..].to_vec());
    }
}

async fn process(inbox: &dyn Inbox, request: &mut CoapRequest<SocketAddr>, peer: SocketAddr) {
    let Ok(message) = String::from_utf8(request.message.payload.clone()) else {
        return answer(request, ResponseType::BadRequest, b"the payload is not UTF-8 JSON".to_vec(), false);
    };
    match inbox.receive(Protocol::Coap, peer.to_string(), message).await {
        Ok(Outcome::Reply(reply)) => answer(request, ResponseType::Changed, reply.message.into_bytes(), true),
        Ok(Outcome::Accepted) => answer(request, ResponseType::Changed, Vec::new(), false),
        Ok(Outcome::BadInput { reason, .. }) => {
            tracing::info!(%peer, %reason, "bad input on the CoAP inbox");
            answer(request, ResponseType::BadRequest, reason.into_bytes(), false)
        }
        // Busy (HTTP's 503): the sender may try again later.
        Err(e @ (InboxError::Deadline | InboxError::Unavailable(_))) => {
            tracing::warn!(%peer, error = %e, "CoAP message not handled");
            answer(request, ResponseType::ServiceUnavailable, e.to_string().into_bytes(), false)
        }
        Err(e @ InboxError::Failed(_)) => {
            tracing::error!(%peer, error = %e, "broker failed");
            answer(request, ResponseType::InternalServerError, Vec::new(), false)
        }
    }
}

/// The answer to a datagram that does not decode: when its header says it
/// is a CoAP request (a truncated packet, a bad option), 4.00 Bad Request
/// with the request's message id and token; otherwise a Reset when the
/// header is readable (RFC 7252 §4.2), else nothing.
fn malformed_answer(datagram: &[u8]) -> Option<Packet> {
    if datagram.len() < 4 || datagram[0] >> 6 != 1 {
        return None;
    }
    let message_id = u16::from_be_bytes([datagram[2], datagram[3]]);
    let token_len = usize::from(datagram[0] & 0x0f);
    let mut packet = Packet::new();
    packet.header.set_version(1);
    packet.header.message_id = message_id;
    if request_message_id(datagram).is_some() {
        packet.header.set_type(if is_confirmable(datagram) { MessageType::Acknowledgement } else { MessageType::NonConfirmable });
        packet.header.code = MessageClass::Response(ResponseType::BadRequest);
        // A truncated token is left out: the piggy-backed ACK still matches
        // by message id.
        if token_len <= 8 && datagram.len() >= 4 + token_len {
            packet.set_token(datagram[4..4 + token_len].to_vec());
        }
        packet.payload = b"malformed CoAP message".to_vec();
    } else {
        packet.header.set_type(MessageType::Reset);
        packet.header.code = MessageClass::Empty;
    }
    Some(packet)
}
