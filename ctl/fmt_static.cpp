// ctl/fmt_static.cpp — fmt's compiled part (what libfmt.so holds), built into spoolctl so the
// sendmail personality starts without loading libfmt.so and, through it, libstdc++.so (see
// ctl/CMakeLists.txt: one exec per message, ld.so symbol binding was most of its work).
// Rule: this is fmt 9's own src/format.cc (MIT licence, © Victor Zverovich): format-inl.h plus the
// same explicit instantiations; another fmt major version must not compile here silently.
#include <fmt/core.h>

#if FMT_VERSION / 10000 != 9
#error "ctl/fmt_static.cpp mirrors fmt 9's src/format.cc; configure with -DSPOOLD_STATIC_CTL=OFF"
#endif

#include <fmt/format-inl.h>

FMT_BEGIN_NAMESPACE
namespace detail {

template FMT_API auto dragonbox::to_decimal(float x) noexcept -> dragonbox::decimal_fp<float>;
template FMT_API auto dragonbox::to_decimal(double x) noexcept -> dragonbox::decimal_fp<double>;

#ifndef FMT_STATIC_THOUSANDS_SEPARATOR
template FMT_API locale_ref::locale_ref(const std::locale& loc);
template FMT_API auto locale_ref::get<std::locale>() const -> std::locale;
#endif

template FMT_API auto thousands_sep_impl(locale_ref) -> thousands_sep_result<char>;
template FMT_API auto decimal_point_impl(locale_ref) -> char;
template FMT_API void buffer<char>::append(const char*, const char*);
template FMT_API void vformat_to(buffer<char>&, string_view, basic_format_args<FMT_BUFFER_CONTEXT(char)>,
                                 locale_ref);

template FMT_API auto thousands_sep_impl(locale_ref) -> thousands_sep_result<wchar_t>;
template FMT_API auto decimal_point_impl(locale_ref) -> wchar_t;
template FMT_API void buffer<wchar_t>::append(const wchar_t*, const wchar_t*);

}  // namespace detail
FMT_END_NAMESPACE
