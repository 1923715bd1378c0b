// smtp/mime_convert.cpp — see mime_convert.h.
#include "smtp/mime_convert.h"

#include <utility>

namespace spoold::smtp {

namespace {

// The first token of a MIME header value, lower-cased: leading white space and RFC 822 comments
// skipped, cut at '/', ';', white space or a comment.
std::string first_token(std::string_view v, bool stop_at_slash) {
  std::size_t i = 0;
  int depth = 0;
  for (; i < v.size(); ++i) {
    char c = v[i];
    if (c == '(')
      ++depth;
    else if (c == ')' && depth > 0)
      --depth;
    else if (depth == 0 && c != ' ' && c != '\t')
      break;
  }
  std::string tok;
  for (; i < v.size(); ++i) {
    char c = v[i];
    if (c == ';' || c == ' ' || c == '\t' || c == '(' || (stop_at_slash && c == '/')) break;
    tok += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  return tok;
}

}  // namespace

MimeType classify_content_type(std::string_view value) {
  std::string t = first_token(value, true);
  if (t == "text") return MimeType::text;
  if (t == "multipart") return MimeType::multipart;
  if (t == "message") return MimeType::message;
  return MimeType::other;
}

MimeEncoding classify_transfer_encoding(std::string_view value) {
  std::string t = first_token(value, false);
  if (t == "7bit") return MimeEncoding::seven_bit;
  if (t == "8bit") return MimeEncoding::eight_bit;
  if (t == "binary") return MimeEncoding::binary;
  if (t == "quoted-printable") return MimeEncoding::quoted_printable;
  if (t == "base64") return MimeEncoding::base64;
  return MimeEncoding::other;
}

BodyDecision decide_body(bool eight_bit, bool server_8bitmime, const std::optional<MimeFacts>& facts) {
  if (!eight_bit) return {BodyPlan::as_is, ""};
  if (server_8bitmime) return {BodyPlan::eight_bit_mime, ""};
  if (!facts) return {BodyPlan::needs_facts, ""};
  const std::string no = "the server does not offer 8BITMIME and ";
  // RFC 2047 encoded words would change what the fields say; not done.
  if (facts->header_8bit) return {BodyPlan::defer, no + "the header has 8-bit bytes"};
  if (!facts->body_8bit) return {BodyPlan::as_is, ""};  // the 8-bit bytes were in a dropped Bcc:
  switch (facts->type) {
    case MimeType::absent:
    case MimeType::text:
      break;
    case MimeType::multipart:
      return {BodyPlan::defer, no + "the message is multipart with 8-bit data (parts are not converted)"};
    case MimeType::message:
      return {BodyPlan::defer, no + "the message is an encapsulated message with 8-bit data"};
    case MimeType::other:
      return {BodyPlan::defer, no + "the 8-bit body is not text"};
    case MimeType::ambiguous:
      return {BodyPlan::defer, no + "the header has more than one Content-Type"};
  }
  switch (facts->encoding) {
    case MimeEncoding::absent:
    case MimeEncoding::seven_bit:  // mislabelled: converting makes the label true
    case MimeEncoding::eight_bit:
      return {BodyPlan::quoted_printable, ""};
    case MimeEncoding::binary:
      return {BodyPlan::defer, no + "the body is binary"};
    case MimeEncoding::quoted_printable:
    case MimeEncoding::base64:
      return {BodyPlan::defer, no + "the body is already encoded but has 8-bit bytes"};
    case MimeEncoding::other:
      return {BodyPlan::defer, no + "the body has an unknown Content-Transfer-Encoding"};
    case MimeEncoding::ambiguous:
      return {BodyPlan::defer, no + "the header has more than one Content-Transfer-Encoding"};
  }
  return {BodyPlan::defer, no + "the body cannot be converted"};
}

std::vector<std::string> qp_header_lines(const MimeFacts& facts) {
  std::vector<std::string> lines{std::string(kQpTransferEncoding)};
  if (!facts.mime_version) lines.emplace_back("MIME-Version: 1.0");
  if (facts.type == MimeType::absent) lines.emplace_back("Content-Type: text/plain; charset=unknown-8bit");
  return lines;
}

// Makes room for n more octets on the output line, with a soft break if they do not fit.
void QpEncoder::room(std::size_t n, std::string& out) {
  if (col_ + n <= kMaxChars) return;
  out += "=\r\n";
  col_ = 0;
}

void QpEncoder::literal(char c, std::string& out) {
  room(1, out);
  if (c == '.' && col_ == 0) return encoded('.', out);  // no output line starts with '.'
  out += c;
  ++col_;
}

void QpEncoder::encoded(unsigned char c, std::string& out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  room(3, out);
  out += '=';
  out += kHex[c >> 4];
  out += kHex[c & 15];
  col_ += 3;
}

void QpEncoder::put(std::string_view bytes, std::string& out) {
  for (char ch : bytes) {
    if (held_) literal(std::exchange(held_, 0), out);  // something follows it on the line
    auto c = static_cast<unsigned char>(ch);
    if (c == ' ' || c == '\t')
      held_ = ch;
    else if (c >= 33 && c <= 126 && c != '=')
      literal(ch, out);
    else
      encoded(c, out);
  }
}

void QpEncoder::end_line(std::string& out) {
  if (held_) encoded(static_cast<unsigned char>(std::exchange(held_, 0)), out);  // RFC 2045 rule 3
  out += "\r\n";
  col_ = 0;
}

}  // namespace spoold::smtp
