// The one translation unit that compiles Catch2's main (keeps the heavy header out of the rest).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
