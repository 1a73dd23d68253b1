/* Byte buffers <-> protobuf-c messages, metadata and deadlines. */
#include "base.h"
#include "rpc_internal.h"

#include <string.h>

grpc_byte_buffer *rpc_buffer_new(size_t n, uint8_t **data) {
  grpc_slice slice = grpc_slice_malloc(n);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1); /* refs the slice */
  grpc_slice_unref(slice);
  /* The buffer's own slice: a small one keeps its bytes inline in the
   * slice struct, which the buffer copied. */
  grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;
  *data = sb->count ? GRPC_SLICE_START_PTR(sb->slices[0]) : NULL; /* none for n == 0 */
  return bb;
}

grpc_byte_buffer *rpc_pack(const ProtobufCMessage *msg, size_t *len) {
  size_t n = protobuf_c_message_get_packed_size(msg);
  uint8_t *data;
  grpc_byte_buffer *bb = rpc_buffer_new(n, &data);
  if (n) protobuf_c_message_pack(msg, data);
  if (len) *len = n;
  return bb;
}

ProtobufCMessage *rpc_unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb) {
  grpc_byte_buffer_reader reader;
  if (!grpc_byte_buffer_reader_init(&reader, bb)) return NULL;
  grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
  ProtobufCMessage *m =
      protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
  grpc_slice_unref(all);
  grpc_byte_buffer_reader_destroy(&reader);
  return m;
}

const uint8_t *rpc_metadata_find(const grpc_metadata_array *md, const char *key, size_t *len) {
  size_t klen = strlen(key);
  for (size_t i = 0; i < md->count; i++) {
    const grpc_metadata *e = &md->metadata[i];
    if (GRPC_SLICE_LENGTH(e->key) == klen && memcmp(GRPC_SLICE_START_PTR(e->key), key, klen) == 0) {
      if (len) *len = GRPC_SLICE_LENGTH(e->value);
      return GRPC_SLICE_START_PTR(e->value);
    }
  }
  return NULL;
}

/* gpr clocks need not share CLOCK_MONOTONIC's epoch, so convert through the
 * time remaining rather than the absolute value. */
int64_t rpc_deadline_to_mono(gpr_timespec deadline) {
  if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0) return INT64_MAX;
  gpr_timespec now = gpr_now(deadline.clock_type);
  gpr_timespec left = gpr_time_sub(deadline, now);
  int64_t ns = (int64_t)left.tv_sec * 1000000000 + left.tv_nsec;
  if (left.tv_sec > 100LL * 365 * 24 * 3600) return INT64_MAX;
  return time_mono_ns() + ns;
}

grpc_slice rpc_status_slice(const char *message) {
  return message ? grpc_slice_from_copied_string(message) : grpc_empty_slice();
}
