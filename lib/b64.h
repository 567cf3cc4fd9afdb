/*
 * b64 - the MIME base64 codec of the sanitizer: a decoder that gives, for any
 * input, exactly the bytes GMime 3.2.13's decoder gives, and an encoder that
 * writes the 76-column CRLF lines of a MIME body.
 *
 * Decoding rules (GMime's g_mime_encoding_base64_decode_step with state = save
 * = 0, called once on the whole body): every byte outside the alphabet
 * A-Z a-z 0-9 + / and '=' is skipped (CR, LF, spaces, NULs, 8-bit bytes,
 * punctuation) without disturbing the quartet being collected. Each complete
 * quartet gives three bytes. The first '=' ends the data: everything after it
 * is ignored; if it completes a quartet after three characters, two more bytes
 * come out, after two characters one byte, otherwise none. Without a '=', a
 * trailing partial quartet gives nothing.
 *
 * Clean runs of alphabet characters are decoded four characters per step with
 * tables (sixteen characters at a time while there are), and an AVX2 version
 * of the same loop is used when the CPU has it; anything else goes through a
 * byte-at-a-time copy of GMime's state machine.
 */
#ifndef SEKISHO_B64_H
#define SEKISHO_B64_H

#include "util/buf.h"

#include <stddef.h>
#include <stdint.h>

/* The output room b64_decode_mime() needs for n input bytes. */
static inline size_t b64_decoded_max(size_t n)
{
    return n / 4 * 3 + 3;
}

/*
 * Decodes the MIME base64 body in[0..n) into out, which must have room for
 * b64_decoded_max(n) bytes, and returns the number of bytes decoded. Bytes of
 * out past the returned length (within b64_decoded_max(n)) may be written and
 * have no meaning. Never fails: every input decodes to something, maybe empty.
 * in may be NULL when n is 0.
 */
size_t b64_decode_mime(const uint8_t *in, size_t n, uint8_t *out);

/*
 * Appends the base64 encoding of in[0..n) to out, cut into lines of 76
 * characters (the last one shorter when the encoding is), each ended by CRLF;
 * '=' padding at the end as usual. An empty input (in may then be NULL)
 * appends nothing. Returns 0, or the buffer's error (-ENOSPC at out's max,
 * -ENOMEM), in which case out's content is unchanged and its sticky error set.
 */
int b64_encode_lines(const uint8_t *in, size_t n, buf *out);

/* The encoded size of n bytes by b64_encode_lines() (SIZE_MAX if it would not
 * fit in a size_t). */
size_t b64_encoded_lines_len(size_t n);

/*
 * The decoders behind b64_decode_mime(), for the tests and the benchmark:
 * B64_IMPL_AUTO (what b64_decode_mime uses: AVX2 when the CPU has it, else
 * portable) or one of them. B64_IMPL_AVX2 on a CPU without AVX2 (or a build
 * for another architecture) means the portable one. b64_impl_resolve() says
 * which implementation a choice means on this CPU.
 */
enum b64_impl { B64_IMPL_AUTO = 0, B64_IMPL_PORTABLE = 1, B64_IMPL_AVX2 = 2 };
enum b64_impl b64_impl_resolve(enum b64_impl impl);
size_t b64_decode_mime_impl(enum b64_impl impl, const uint8_t *in, size_t n, uint8_t *out);

#endif
