//! The `gpucost.v1` services' codec: prost's, with one step before a message is decoded: [`Screen`], which
//! refuses from its wire form a message that could not be valid (see [`crate::limits`]), so that what it
//! would cost to decode is never spent.

use std::marker::PhantomData;

use prost::Message;
use prost::bytes::Buf;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use tonic_prost::ProstEncoder;

use crate::v1::{Ack, UsageBatch};

/// The trailer naming the batch a collector rejected (`Ingest.Report`).
pub const REJECTED_SEQ_TRAILER: &str = "gpucost-rejected-seq";

/// A look at a message's wire form before it is decoded.
pub trait Screen {
    fn screen(wire: &[u8]) -> Result<(), Status>;
}

impl Screen for UsageBatch {
    /// A batch over the contract's counts is rejected (INVALID_ARGUMENT, naming the batch in the
    /// `gpucost-rejected-seq` trailer), as validation would after decoding it.
    fn screen(wire: &[u8]) -> Result<(), Status> {
        crate::limits::screen(wire).map_err(|e| {
            let mut md = MetadataMap::new();
            if let Ok(v) = e.seq.to_string().parse() {
                md.insert(REJECTED_SEQ_TRAILER, v);
            }
            Status::with_metadata(Code::InvalidArgument, e.to_string(), md)
        })
    }
}

impl Screen for Ack {
    fn screen(_: &[u8]) -> Result<(), Status> {
        Ok(())
    }
}

/// prost's codec, screening each message before decoding it.
#[derive(Debug, Clone)]
pub struct ScreenedCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ScreenedCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ScreenedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Screen + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ScreenedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ScreenedDecoder(PhantomData)
    }
}

#[derive(Debug, Clone)]
pub struct ScreenedDecoder<U>(PhantomData<U>);

impl<U: Message + Default + Screen> Decoder for ScreenedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // The buffer holds the whole message, contiguous.
        if buf.chunk().len() == buf.remaining()
            && let Err(refused) = U::screen(buf.chunk())
        {
            buf.advance(buf.remaining());
            return Err(refused);
        }
        U::decode(buf).map(Some).map_err(|e| Status::internal(format!("failed to decode Protobuf message: {e}")))
    }
}
