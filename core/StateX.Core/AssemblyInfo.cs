using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("StateX.Tests")]
[assembly: InternalsVisibleTo("StateX.Bench")]
