namespace StateX.Data;

/// <summary>Bad data or a bad data spec; the message names the file and the line or byte offset where it can.</summary>
public sealed class DataException(string message, Exception? inner = null) : Exception(message, inner);
