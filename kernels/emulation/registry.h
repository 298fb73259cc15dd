// registry.h -- a typed launch stub for each kernel of a .cu file.
//
// The generated translation unit includes cuda_emu.h, the .cu file and this header, then lists
// the file's extern "C" kernels (found by the Python side) with MINITL_EMU_KERNEL.  Template
// deduction on each kernel's function pointer gives its parameter types: the launcher checks
// the arguments against them and calls the kernel with each one read at its C type, as
// cuLaunchKernel does with its array of argument pointers.
#pragma once

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

namespace minitl_emu {

struct KernelEntry {
    const char* name;
    void (*fn)();                              // the kernel, type-erased
    const char* (*signature)();                // "const float*,int,long long"
    void (*call)(void (*fn)(), void** args);   // calls fn with *(T_i*)args[i]
};

template <class T> struct TypeName { static const char* get() { return "?"; } };
#define MINITL_EMU_TYPE_NAME(T)                                      \
    template <> struct TypeName<T> { static const char* get() { return #T; } };
MINITL_EMU_TYPE_NAME(bool)
MINITL_EMU_TYPE_NAME(char)
MINITL_EMU_TYPE_NAME(signed char)
MINITL_EMU_TYPE_NAME(unsigned char)
MINITL_EMU_TYPE_NAME(short)
MINITL_EMU_TYPE_NAME(unsigned short)
MINITL_EMU_TYPE_NAME(int)
MINITL_EMU_TYPE_NAME(unsigned int)
MINITL_EMU_TYPE_NAME(long)
MINITL_EMU_TYPE_NAME(unsigned long)
MINITL_EMU_TYPE_NAME(long long)
MINITL_EMU_TYPE_NAME(unsigned long long)
MINITL_EMU_TYPE_NAME(float)
MINITL_EMU_TYPE_NAME(double)
MINITL_EMU_TYPE_NAME(float2)
MINITL_EMU_TYPE_NAME(float4)
MINITL_EMU_TYPE_NAME(void)
#undef MINITL_EMU_TYPE_NAME

template <class T> std::string describe()
{
    if constexpr (std::is_pointer<T>::value) {
        using Pointee = std::remove_pointer_t<T>;
        return std::string(std::is_const<Pointee>::value ? "const " : "")
               + TypeName<std::remove_cv_t<Pointee>>::get() + "*";
    } else {
        return TypeName<std::remove_cv_t<T>>::get();
    }
}

template <class... P> const char* signature_of()
{
    static const std::string text = [] {
        std::string s;
        ((s += (s.empty() ? "" : ","), s += describe<P>()), ...);
        return s;
    }();
    return text.c_str();
}

template <class... P, std::size_t... I>
void call_impl(void (*f)(P...), void** args, std::index_sequence<I...>)
{
    f(*static_cast<std::remove_cv_t<P>*>(args[I])...);
}

template <class... P> void call_with(void (*g)(), void** args)
{
    call_impl(reinterpret_cast<void (*)(P...)>(g), args, std::index_sequence_for<P...>{});
}

template <class... P> KernelEntry entry(const char* name, void (*f)(P...))
{
    return KernelEntry{name, reinterpret_cast<void (*)()>(f), &signature_of<P...>, &call_with<P...>};
}

}  // namespace minitl_emu

#define MINITL_EMU_KERNEL(name) ::minitl_emu::entry(#name, &name)
